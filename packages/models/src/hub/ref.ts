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
  if (file?.split('/').some((p) => p === '..' || p === '.' || p === '' || /[\\\0]/.test(p))) throw new Error(`"${s}": the file path must not contain empty, "." or ".." segments, backslashes or NUL`);
  checkRepoId(repo, s);
  const revision = m[2] ?? 'main';
  checkRevision(revision, s);
  return { kind: 'hub', repo, revision, file };
}

/** huggingface_hub's repo id rules (validate_repo_id): one or two names of letters, digits,
 * "-", "_" and "."; no "--" or ".."; no name that starts or ends with "-" or "."; at most 96 characters. */
function checkRepoId(repo: string, s: string): void {
  const names = repo.split('/');
  const bad = repo.length > 96 || repo.includes('--') || repo.includes('..')
    || names.some((n) => !/^[\w.-]+$/.test(n) || /^[-.]|[-.]$/.test(n));
  if (bad) throw new Error(`"${s}": "${repo}" is not a Hub repo id; expected org/name of letters, digits, "-", "_" and "." (no "--" or "..", at most 96 characters)`);
}

/** A branch, tag or commit name that is safe as a URL segment and a cache folder name:
 * git's ref-name rules, without the "/" that refs/pr/N would need. */
function checkRevision(rev: string, s: string): void {
  const bad = rev.length > 255 || rev.startsWith('.') || rev.startsWith('-') || rev.endsWith('.') || rev.endsWith('.lock') || rev.includes('..')
    || rev.includes('@{') || /[\x00-\x20\x7f~^:?*[\\%]/.test(rev);
  if (bad) throw new Error(`"${s}": the revision "${rev}" is not a branch, tag or commit name; expected e.g. main, v1.0 or a 40-hex commit`);
}

/** The cache folder name huggingface_hub uses for a model repo. */
export function repoFolderName(repo: string): string {
  return `models--${repo.replace(/\//g, '--')}`;
}
