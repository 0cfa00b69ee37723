/** The three ways to adapt a pretrained network (no imports: the page uses this too). */
export type Strategy = 'feature-extraction' | 'fine-tune' | 'gradual-unfreezing';

export const STRATEGIES: Record<Strategy, { label: string; help: string; lr: number }> = {
  'feature-extraction': { label: 'Feature extraction', help: 'frozen backbone, features computed once and cached, a new linear head learns', lr: 1e-2 },
  'fine-tune': { label: 'Fine-tune', help: 'every layer learns (pretrained backbone, new head)', lr: 1e-3 },
  'gradual-unfreezing': { label: 'Gradual unfreezing', help: 'the head first, then one block more every few epochs, from the top down', lr: 1e-3 },
};
