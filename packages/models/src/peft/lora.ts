/**
 * LoRA on any network of this package, with Hugging Face PEFT's semantics: `targetModules` as
 * a list matches module names exactly or by suffix (`query` matches
 * `bert.encoder.layer.0.attention.self.query`), as one string it is a regular expression the
 * whole name must match; Linear, Conv2d and GPT-2's Conv1D are adapted. The base is frozen and
 * only the active adapter (and `modulesToSave`, e.g. a new head) trains. Several named adapters
 * share one base; `setAdapter` switches, `merge` folds the active one into the base weights.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import type { Module } from '../nn/module.js';
import { isLoraBase, LoraLayer, type LoraBase } from './lora-layers.js';
import { editDistance } from '../edit-distance.js';

export interface LoraOptions {
  /** Rank of the update (PEFT's default 8). */
  r?: number;
  /** Scaling numerator: the update is multiplied by alpha / r (PEFT's default 8). */
  alpha?: number;
  /** Dropout on the adapter's input (PEFT's default 0). */
  dropout?: number;
  /** Module names (exact or suffix) or one regular expression over the full name. */
  targetModules: string | readonly string[];
  /** Modules trained in full and saved with the adapter, e.g. a new classifier head. */
  modulesToSave?: readonly string[];
  adapterName?: string;
  /** Recorded in adapter_config.json so PEFT finds the base. */
  baseModelNameOrPath?: string | null;
  /** PEFT's task type (SEQ_CLS, CAUSAL_LM, …), or null for a custom model such as a CNN. */
  taskType?: string | null;
}

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  targetModules: string | string[];
  modulesToSave: string[];
  baseModelNameOrPath: string | null;
  taskType: string | null;
}

/** PEFT's check_target_module_exists: a list entry equals the name or ends it after a dot. */
function targetMatcher(target: string | readonly string[]): (name: string) => boolean {
  if (typeof target === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${target})$`);
    } catch (e) {
      throw new SyntaxError(`lora: targetModules ${JSON.stringify(target)} is not a valid regular expression (${(e as Error).message})`);
    }
    return (name) => re.test(name);
  }
  return (name) => target.some((t) => name === t || name.endsWith(`.${t}`));
}

/** The adaptable module names closest to `pattern`, by their full name or last component. */
export function nearestModuleNames(pattern: string, names: readonly string[], k = 4): string[] {
  const score = (n: string) => Math.min(editDistance(pattern, n), editDistance(pattern, n.slice(n.lastIndexOf('.') + 1)));
  return [...names].sort((x, y) => score(x) - score(y) || x.length - y.length).slice(0, k);
}

function checkOptions(o: LoraOptions): void {
  const r = o.r ?? 8;
  if (!Number.isInteger(r) || r < 1) throw new RangeError(`lora: r must be a positive integer, got ${r}`);
  const alpha = o.alpha ?? 8;
  if (!Number.isFinite(alpha) || alpha <= 0) throw new RangeError(`lora: alpha must be a positive number, got ${alpha}`);
  const p = o.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new RangeError(`lora: dropout must be in [0, 1), got ${p}`);
  const t = o.targetModules;
  if (t === undefined || (typeof t !== 'string' && t.length === 0) || t === '') throw new RangeError('lora: targetModules names no module; give names such as ["query", "value"] or a regular expression');
}

const registry = new WeakMap<Module, LoraModel>();

/** The LoRA handle of a model `lora()` adapted, if any. */
export function loraOf(model: Module): LoraModel | undefined {
  return registry.get(model);
}

export class LoraModel {
  readonly configs = new Map<string, LoraConfig>();
  readonly layers = new Map<string, LoraLayer>();
  private active: string | null = null;
  /** Each adapter's own copy of the modules it trains in full, keyed by parameter name. */
  private readonly saved = new Map<string, Map<string, Tensor>>();

  constructor(readonly model: Module) {
    if (registry.has(model)) throw new Error('lora: this model already has LoRA adapters; add more with addAdapter(name, options)');
    registry.set(model, this);
  }

  get activeAdapter(): string | null {
    return this.active;
  }

  adapterNames(): string[] {
    return [...this.configs.keys()];
  }

  /** Modules LoRA can adapt, by name (adapters' own layers excluded). */
  adaptableModules(): [string, LoraBase][] {
    const out: [string, LoraBase][] = [];
    for (const [name, m] of this.model.namedModules()) {
      if (name !== '' && isLoraBase(m) && !/(^|\.)lora_[AB](\.|$)/.test(name)) out.push([name, m]);
    }
    return out;
  }

  /** Adds adapter `name` on the modules `targetModules` picks; it becomes active if none is. */
  addAdapter(name: string, opts: LoraOptions): this {
    if (name === '' || name.includes('.')) throw new RangeError(`lora: an adapter name must be non-empty and have no ".", got ${JSON.stringify(name)}`);
    if (this.configs.has(name)) throw new Error(`lora: an adapter named "${name}" exists already; pick another name or deleteAdapter("${name}") first`);
    checkOptions(opts);
    const cfg: LoraConfig = {
      r: opts.r ?? 8,
      alpha: opts.alpha ?? 8,
      dropout: opts.dropout ?? 0,
      targetModules: typeof opts.targetModules === 'string' ? opts.targetModules : [...opts.targetModules],
      modulesToSave: [...(opts.modulesToSave ?? [])],
      baseModelNameOrPath: opts.baseModelNameOrPath ?? null,
      taskType: opts.taskType ?? null,
    };
    const targets = this.resolveTargets(cfg.targetModules);
    const toSave = this.resolveModulesToSave(cfg.modulesToSave);
    for (const [path, m] of targets) {
      let layer = this.layers.get(path);
      if (!layer) {
        layer = new LoraLayer(m, path);
        this.layers.set(path, layer);
      }
      layer.add(name, cfg);
    }
    this.configs.set(name, cfg);
    this.saved.set(name, new Map(toSave.map(([k, p]) => [k, A.keep(A.noGrad(() => p.clone()))])));
    if (this.active === null) this.setAdapter(name);
    else this.setTrainable();
    return this;
  }

  private resolveTargets(target: string | string[]): [string, LoraBase][] {
    const match = targetMatcher(target);
    const all = [...this.model.namedModules()].filter(([n]) => n !== '' && !/(^|\.)lora_[AB](\.|$)/.test(n));
    const hits = all.filter(([n]) => match(n));
    const adaptable = this.adaptableModules().map(([n]) => n);
    const list = typeof target === 'string' ? [target] : target;
    if (typeof target !== 'string') {
      for (const t of list) {
        if (!all.some(([n]) => n === t || n.endsWith(`.${t}`))) {
          throw new Error(`lora: target module "${t}" matches no module of ${this.model.constructor.name}; the nearest names are ${nearestModuleNames(t, adaptable).join(', ')}`);
        }
      }
    } else if (hits.length === 0) {
      throw new Error(`lora: target pattern ${JSON.stringify(target)} matches no module of ${this.model.constructor.name}; the nearest names are ${nearestModuleNames(target, adaptable).join(', ')}`);
    }
    const bad = hits.find(([, m]) => !isLoraBase(m));
    if (bad) throw new Error(`lora: target module "${bad[0]}" is a ${bad[1].constructor.name}; LoRA adapts Linear, Conv2d and Conv1D layers`);
    return hits as [string, LoraBase][];
  }

  private resolveModulesToSave(names: readonly string[]): [string, Tensor][] {
    const params = this.model.namedParameters().filter(([k]) => !/(^|\.)lora_[AB]\./.test(k));
    const out: [string, Tensor][] = [];
    for (const n of names) {
      const hit = params.filter(([k]) => k.startsWith(`${n}.`) || k.includes(`.${n}.`));
      if (hit.length === 0) {
        const mods = [...this.model.namedModules()].map(([m]) => m).filter(Boolean);
        throw new Error(`lora: modulesToSave "${n}" matches no module with parameters; the nearest names are ${nearestModuleNames(n, mods).join(', ')}`);
      }
      out.push(...hit);
    }
    return out;
  }

  /** Parameters (by name) that the adapter trains in full. */
  modulesToSaveParameters(name = this.requireActive()): [string, Tensor][] {
    const own = new Map(this.model.namedParameters());
    this.config(name);
    return [...this.saved.get(name)!.keys()].map((k) => [k, own.get(k)!]);
  }

  config(name: string): LoraConfig {
    const c = this.configs.get(name);
    if (!c) throw new Error(`lora: no adapter named "${name}"; the adapters are ${this.adapterNames().join(', ') || 'none'}`);
    return c;
  }

  private requireActive(): string {
    if (this.active === null) throw new Error('lora: no adapter is active; call setAdapter(name)');
    return this.active;
  }

  /** Makes `name` the adapter the forward adds and the one that trains. */
  setAdapter(name: string): this {
    this.config(name);
    if (this.isMerged) throw new Error(`lora: adapter "${this.active}" is merged into the base; unmerge() before switching to "${name}"`);
    if (this.active !== null && this.active !== name) this.swapModulesToSave(this.active, name);
    this.active = name;
    for (const l of this.layers.values()) l.active = l.has(name) ? name : null;
    this.setTrainable();
    return this;
  }

  private swapModulesToSave(from: string, to: string): void {
    const own = new Map(this.model.namedParameters());
    A.noGrad(() => {
      for (const [k, t] of this.saved.get(from)!) A.assign(t, own.get(k)!);
      for (const [k, t] of this.saved.get(to)!) A.assign(own.get(k)!, t);
    });
  }

  private setTrainable(): void {
    this.model.freeze();
    if (this.active === null) return;
    for (const l of this.layers.values()) {
      if (!l.has(this.active)) continue;
      const { a, b } = l.weights(this.active);
      a.requiresGrad = true;
      b.requiresGrad = true;
    }
    for (const [, p] of this.modulesToSaveParameters(this.active)) p.requiresGrad = true;
  }

  get isMerged(): boolean {
    return [...this.layers.values()].some((l) => l.merged.length > 0);
  }

  /** Adds the active adapter's B @ A * scaling into the base weights (inference without the extra matmuls). */
  merge(): this {
    const name = this.requireActive();
    for (const l of this.layers.values()) if (l.has(name)) l.merge(name);
    return this;
  }

  /** Subtracts what `merge` added, back to the base weights (to float32 rounding). */
  unmerge(): this {
    for (const l of this.layers.values()) l.unmerge();
    return this;
  }

  /** Merges the active adapter and removes every adapter: a plain model with the base's names. */
  mergeAndUnload(): Module {
    if (this.active !== null && !this.isMerged) this.merge();
    for (const l of this.layers.values()) l.detach();
    this.layers.clear();
    for (const s of this.saved.values()) for (const t of s.values()) t.dispose();
    this.saved.clear();
    this.configs.clear();
    this.active = null;
    registry.delete(this.model);
    return this.model;
  }

  deleteAdapter(name: string): this {
    this.config(name);
    for (const l of this.layers.values()) if (l.has(name)) l.delete(name);
    for (const t of this.saved.get(name)!.values()) t.dispose();
    this.saved.delete(name);
    this.configs.delete(name);
    if (this.active === name) {
      this.active = null;
      this.setTrainable();
    }
    return this;
  }

  /** The adapter's tensors under PEFT's saved names: `base_model.model.<module>.lora_A.weight`,
   * and `base_model.model.<param>` for the modules it trains in full. */
  adapterStateDict(name = this.requireActive()): Map<string, Tensor> {
    this.config(name);
    const out = new Map<string, Tensor>();
    for (const [path, l] of this.layers) {
      if (!l.has(name)) continue;
      const { a, b } = l.weights(name);
      out.set(`base_model.model.${path}.lora_A.weight`, a);
      out.set(`base_model.model.${path}.lora_B.weight`, b);
    }
    const live = name === this.active ? new Map(this.modulesToSaveParameters(name)) : this.saved.get(name)!;
    for (const [k, t] of live) out.set(`base_model.model.${k}`, t);
    return out;
  }

  /** Whether any adapted layer is a Conv1D, whose weight is [in, out] (PEFT's fan_in_fan_out). */
  fanInFanOut(name = this.requireActive()): boolean {
    return [...this.layers.values()].some((l) => l.has(name) && l.fanInFanOut);
  }

  /** Trainable and total parameter counts, as PEFT's print_trainable_parameters. */
  trainableParameters(): { trainable: number; total: number } {
    return { trainable: this.model.numParameters({ trainable: true }), total: this.model.numParameters() };
  }
}

/** Adds a LoRA adapter to `model` (in place) and returns its handle; the base is frozen. */
export function lora(model: Module, opts: LoraOptions): LoraModel {
  const existing = registry.get(model);
  if (existing) throw new Error(`lora: this model already has LoRA adapters (${existing.adapterNames().join(', ')}); add more with loraOf(model).addAdapter(name, options)`);
  checkOptions(opts);
  const lm = new LoraModel(model);
  try {
    return lm.addAdapter(opts.adapterName ?? 'default', opts);
  } catch (e) {
    registry.delete(model);
    throw e;
  }
}
