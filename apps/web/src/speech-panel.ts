/**
 * The speech panel: the user's own words, a few takes each from the microphone or picked audio
 * files, fine-tune the shipped Wav2Vec2 backbone (speech_w2v2_tiny, feature encoder frozen, a
 * new head) to tell them apart, then classify a new take. Web Audio and the microphone exist
 * on the page's main thread only, and the model is small (105k parameters, one-second clips),
 * so it trains here on the page's own WebGPU device rather than in the image worker.
 */
import * as A from '@tl/autograd';
import { SPEECH_W2V2_TINY, type Wav2Vec2ForSequenceClassification } from '@tl/models';
import { init } from '@tl/tensor';
import { adamw, browserAudio, decodeAudioBlob, normalizeClip, recordMicrophone, Trainer } from '@tl/train';

export interface SpeechPanelOptions {
  /** The shipped backbone's safetensors; null trains from scratch. */
  weightsUrl: string | null;
  epochs?: number;
}

/** What a test (or the page) reads after each action. */
export interface SpeechPanelState {
  takes: number[];
  trained: boolean;
  prediction: { label: string; probs: number[] } | null;
  error: string | null;
}

const RATE = SPEECH_W2V2_TINY.sampleRate;
const LENGTH = SPEECH_W2V2_TINY.clipSamples;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

export function mountSpeechPanel(root: HTMLElement, opts: SpeechPanelOptions): SpeechPanelState {
  const state: SpeechPanelState = { takes: [], trained: false, prediction: null, error: null };
  const takes: Float32Array[][] = [];
  const names: HTMLInputElement[] = [];
  const counts: HTMLSpanElement[] = [];
  let model: Wav2Vec2ForSequenceClassification | null = null;
  let classes: string[] = [];
  const status = el('p', { className: 'speech-status' });
  status.setAttribute('role', 'status');
  const say = (line: string, error = false): void => {
    status.textContent = line;
    state.error = error ? line : null;
  };
  // Every action marks the panel busy until it has said how it went.
  const act = (fn: () => Promise<void>) => async () => {
    root.dataset.busy = 'true';
    try {
      await fn();
    } catch (e) {
      say((e as Error).message, true);
    } finally {
      root.dataset.busy = 'false';
    }
  };
  const list = el('div', { className: 'speech-classes' });
  const addClass = (name: string): void => {
    const k = takes.length;
    takes.push([]);
    state.takes.push(0);
    const input = el('input', { type: 'text', value: name, className: 'speech-name' });
    const count = el('span', { className: 'speech-count', textContent: '0 takes' });
    const update = (): void => {
      state.takes[k] = takes[k]!.length;
      count.textContent = `${takes[k]!.length} takes`;
    };
    const record = el('button', { type: 'button', className: 'speech-record', textContent: 'Record 1 s' });
    record.onclick = act(async () => {
      say(`recording "${input.value}"…`);
      takes[k]!.push((await recordMicrophone({ sampleRate: RATE, length: LENGTH })).clip);
      update();
      say(`recorded a take of "${input.value}"`);
    });
    const pick = el('input', { type: 'file', accept: 'audio/*', multiple: true, className: 'speech-files' });
    pick.onchange = act(async () => {
      let browserResampled = 0;
      for (const f of pick.files ?? []) {
        const r = await decodeAudioBlob(f, { sampleRate: RATE, length: LENGTH });
        takes[k]!.push(r.clip);
        if (r.facts.browserResampled && r.facts.rate !== RATE) browserResampled++;
      }
      update();
      say(`added ${pick.files?.length ?? 0} files to "${input.value}"${browserResampled ? ` (${browserResampled} of a format whose rate the page cannot read were resampled by the browser first)` : ''}`);
    });
    names.push(input);
    counts.push(count);
    const row = el('div', { className: 'speech-class' }, input, record, pick, count);
    Object.assign(row.style, { display: 'flex', gap: '0.5em', alignItems: 'center', margin: '0.3em 0' });
    list.append(row);
  };
  addClass('yes');
  addClass('no');
  const more = el('button', { type: 'button', textContent: 'Add a word' });
  more.onclick = () => addClass(`word ${takes.length + 1}`);
  const train = el('button', { type: 'button', className: 'speech-train', textContent: 'Fine-tune' });
  train.onclick = act(async () => {
    await init();
    classes = names.map((n) => n.value.trim() || 'unnamed');
    const { train: data } = await browserAudio(classes.map((name, k) => ({ name, clips: takes[k]! })), { sampleRate: RATE, length: LENGTH, augment: true, identity: 'speech-panel' });
    model?.dispose();
    A.manualSeed(0);
    const m = SPEECH_W2V2_TINY.create({ numClasses: SPEECH_W2V2_TINY.numClasses });
    if (opts.weightsUrl) {
      const res = await fetch(opts.weightsUrl);
      if (!res.ok) throw new Error(`the speech backbone ${opts.weightsUrl}: HTTP ${res.status}`);
      await m.load(new Uint8Array(await res.arrayBuffer()), { strict: true });
      m.freezeFeatureEncoder();
    }
    m.resetClassifier(classes.length);
    const epochs = opts.epochs ?? 15;
    say(`fine-tuning on ${data.length} takes of ${classes.length} words, ${epochs} epochs…`);
    const trainer = new Trainer(m, { optimizer: adamw({ lr: 1e-3 }), epochs, batchSize: 8, seed: 0 });
    const history = await trainer.fit(data);
    model = m;
    state.trained = true;
    say(`fine-tuned: last training loss ${history.at(-1)!.trainLoss.toFixed(3)}${opts.weightsUrl ? '' : ' (from scratch: no backbone weights)'}`);
  });
  const classify = el('button', { type: 'button', className: 'speech-classify', textContent: 'Record and classify' });
  const result = el('p', { className: 'speech-result' });
  classify.onclick = act(async () => {
    if (!model) throw new Error('fine-tune first: record a few takes of each word, then press Fine-tune');
    say('listening…');
    const { clip } = await recordMicrophone({ sampleRate: RATE, length: LENGTH });
    model.eval();
    const probs = A.tidy(() => A.noGrad(() => A.softmax(model!.forward(A.tensor(normalizeClip(clip), { shape: [1, LENGTH] })), -1)));
    const p = Array.from(await probs.data());
    probs.dispose();
    const best = p.indexOf(Math.max(...p));
    state.prediction = { label: classes[best]!, probs: p };
    result.textContent = classes.map((c, i) => `${c} ${(100 * p[i]!).toFixed(1)}%`).join(' · ');
    say(`heard "${classes[best]}"`);
  });
  root.append(
    el('h2', { textContent: 'Speech: your own words' }),
    el('p', { textContent: 'Record a few one-second takes of each word (or pick audio files), fine-tune the shipped Wav2Vec2 backbone on them, then say a word to classify it. Audio stays in this page.' }),
    list, more, train, classify, status, result,
  );
  root.dataset.busy = 'false';
  return state;
}
