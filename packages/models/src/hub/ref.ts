/** Weight references: `hf:org/name[@revision][/path/in/repo]`, http(s) URLs, or paths. */
export interface HubRef {
  kind: 'hub';
  repo: string;
  revision: string;
  /** File inside the repo; undefined means the default (model.safetensors). */
  file: string | undefined;
}

export type WeightRef = HubRef | { kind: 'url'; url: string } | { kind: 'path'; path: string };

export const DEFAULT_WEIGHTS_FILE = 'model.safetensors';

export function parseWeightRef(s: string): WeightRef {
  if (s.startsWith('hf:') || s.startsWith('hf://')) return parseHubRef(s);
  if (/^https?:\/\//.test(s)) return { kind: 'url', url: s };
  return { kind: 'path', path: s };
}

/** `hf:timm/resnet18.a1_in1k`, `hf:bert-base-uncased@main/model.safetensors`, `hf:org/name@v1.0`. */
export function parseHubRef(s: string): HubRef {
  const body = s.replace(/^hf:(\/\/)?/, '');
  const m = /^([A-Za-z0-9][\w.-]*(?:\/[\w.-]+)?)(?:@([^/]+))?(?:\/(.+))?$/.exec(body);
  if (!m) throw new Error(`"${s}" is not a Hub reference; expected hf:org/name[@revision][/file]`);
  let repo = m[1]!;
  let file: string | undefined = m[3];
  // "hf:org/name/file" without a revision: the first two segments are the repo.
  if (!m[2] && !repo.includes('/') && file) {
    const [name, ...rest] = file.split('/');
    repo = `${repo}/${name!}`;
    file = rest.length ? rest.join('/') : undefined;
  }
  if (file?.split('/').some((p) => p === '..' || p === '')) throw new Error(`"${s}": the file path must not contain empty or ".." segments`);
  return { kind: 'hub', repo, revision: m[2] ?? 'main', file };
}

/** The cache folder name huggingface_hub uses for a model repo. */
export function repoFolderName(repo: string): string {
  return `models--${repo.replace(/\//g, '--')}`;
}
