/**
 * Private adaptation in a page: a text model loads from a Hub endpoint (its public files), the
 * user's own labelled sentences stay in the page's memory, LoRA adapters and a new head train on
 * them with the Trainer, and the adapter comes out as PEFT's two files for the user to keep.
 * Built with esbuild (browser conditions) by lora-private.test.ts, which drives `window.__lora`.
 */
import * as A from '@tl/autograd';
import { adapterFiles, batchTensors, fromPretrainedTextBrowser, lora } from '@tl/models';
import { adamw, constant, textDataset, Trainer } from '@tl/train';
import { init } from '@tl/tensor';

export interface LoraArgs {
  id: string;
  weights: string;
  endpoint: string;
  rows: { text: string; label: string }[];
  targets: string[];
  epochs: number;
}

export interface LoraRun {
  trainable: number;
  total: number;
  losses: number[];
  /** Accuracy on the user's sentences after training, in eval mode. */
  trainAccuracy: number;
  adapterKeys: string[];
  adapterBytes: number;
  config: Record<string, unknown>;
  /** Largest difference between the merged and the unmerged model's logits on the user's sentences. */
  mergeDiff: number;
}

async function run(a: LoraArgs): Promise<LoraRun | { error: string }> {
  try {
    A.manualSeed(5);
    const { model, tokenizer } = await fromPretrainedTextBrowser(a.id, { weights: a.weights, endpoint: a.endpoint, numClasses: 2 });
    const lm = lora(model, { r: 2, alpha: 4, targetModules: a.targets, modulesToSave: [model.classifierPath], taskType: 'SEQ_CLS' });
    const { trainable, total } = lm.trainableParameters();
    const data = textDataset(a.rows, tokenizer, { maxLength: 16 });
    const trainer = new Trainer(model, { optimizer: adamw({ lr: 3e-2 }), schedule: constant(), epochs: a.epochs, batchSize: 8, seed: 1, logger: () => {} });
    const history = await trainer.fit(data);
    const accuracy = (await trainer.evaluate(data)).accuracy ?? 0;
    const files = await adapterFiles(lm);
    const keys = Object.keys(JSON.parse(new TextDecoder().decode(files.weights.subarray(8, 8 + Number(new DataView(files.weights.buffer).getBigUint64(0, true)))))).filter((k) => k !== '__metadata__');
    model.eval();
    const { inputIds, attentionMask, tokenTypeIds } = batchTensors(tokenizer.encodeBatch(a.rows.map((r) => r.text), { padding: 'longest' }));
    const forward = () => A.noGrad(() => model.forward(inputIds, attentionMask, tokenTypeIds));
    const before = await forward().data();
    lm.merge();
    const after = await forward().data();
    let mergeDiff = 0;
    for (let i = 0; i < before.length; i++) mergeDiff = Math.max(mergeDiff, Math.abs(before[i]! - after[i]!));
    model.dispose();
    return {
      trainable, total, losses: history.map((h) => h.trainLoss), trainAccuracy: accuracy,
      adapterKeys: keys, adapterBytes: files.weights.byteLength, config: { ...files.config }, mergeDiff,
    };
  } catch (e) {
    return { error: String((e as Error).stack ?? e) };
  }
}

declare global {
  interface Window {
    __lora?: { adapter: string; run: typeof run } | { error: string };
  }
}

init().then(
  (e) => (window.__lora = { adapter: e.adapterDescription, run }),
  (err: Error) => (window.__lora = { error: String(err.stack ?? err) }),
);
