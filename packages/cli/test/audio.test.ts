/**
 * Speech through the built CLI: `tl train --data <audio folder>` with no --model starts from the
 * shipped speech backbone; the run folder, `tl eval` and `tl predict` take audio; the bad input
 * of an audio folder (a file that is not audio, an empty clip, a stereo 44.1 kHz file, a
 * ten-minute file) is one line each or one notice for all, and no good clip is lost. The clips
 * are tones made here (half a second each), so the run takes a few seconds of training.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tone, wav } from '../../train/test/wav-files.js';
import { spawnNode } from './spawn-node.js';

const TL = new URL('../dist/tl.js', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'tl-audio-cli-'));
const p = (...s: string[]): string => join(work, ...s);

async function tl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await spawnNode([TL, ...args], { cwd: work, encoding: 'utf8', timeout: 300_000, env: { ...process.env, CI: '1', TL_DEBUG: '' } });
  // Dawn's notes about lowered limits are the adapter's, not ours.
  const err = r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning: max')).join('\n');
  return { code: r.status ?? -1, out: r.stdout, err };
}

const count = (s: string, re: RegExp): number => s.split('\n').filter((l) => re.test(l)).length;

describe('tl on audio folders', () => {
  let train: Awaited<ReturnType<typeof tl>>;
  beforeAll(async () => {
    // Low tones are "down", high tones "up": four takes each at 16 kHz, and the bad files among them.
    for (const [word, hz] of [['down', 220], ['up', 1400]] as const) {
      mkdirSync(p('words', word), { recursive: true });
      for (let i = 0; i < 4; i++) writeFileSync(p('words', word, `${i}.wav`), wav([tone(8000, 16000, hz + 20 * i)], 16000));
    }
    writeFileSync(p('words', 'up', 'stereo.wav'), wav([tone(22050, 44100, 1400), tone(22050, 44100, 1450)], 44100));
    writeFileSync(p('words', 'down', 'long.wav'), wav([tone(600 * 8000, 8000, 220)], 8000));
    writeFileSync(p('words', 'down', 'empty.wav'), wav([new Float32Array(0)], 16000));
    writeFileSync(p('words', 'up', 'notes.wav'), 'these are not samples');
    train = await tl(['train', '--data', 'words', '--epochs', '3', '--val-split', '0.2', '--out', 'run']);
  }, 300_000);

  it('trains from the shipped speech backbone with no --model', () => {
    expect(train.code, train.err).toBe(0);
    expect(train.err).toMatch(/speech_w2v2_tiny: starting from the shipped speech backbone \(.*speech-w2v2-tiny\.safetensors\); the convolutional feature encoder is frozen/);
    // 10 readable clips (8 tones, the stereo and the long file): one of each class held out.
    expect(train.err).toMatch(/8 training and 2 validation clips, 2 classes/);
    const config = JSON.parse(readFileSync(p('run', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ model: 'speech_w2v2_tiny', task: 'audio-classification', epochs: 3, batchSize: 8 });
    for (const f of ['model.safetensors', 'metrics.jsonl', 'report.html', 'results.json']) expect(existsSync(p('run', f)), f).toBe(true);
    expect(readFileSync(p('run', 'report.html'), 'utf8')).toMatch(/speech_w2v2_tiny on words/);
  });

  it('names each unreadable file once and says resampling, mixdown and cutting in one notice', () => {
    const all = `${train.out}\n${train.err}`;
    expect(count(all, /skipped .*notes\.wav: not a readable audio file .*expected WAV, FLAC, MP3 or Ogg Vorbis/)).toBe(1);
    expect(count(all, /skipped .*empty\.wav: empty clip \(0 samples\)/)).toBe(1);
    expect(count(all, /resampled/)).toBe(1);
    expect(all).toMatch(/words: 2 clips resampled to 16000 Hz \(from 8000, 44100 Hz\); 1 clip mixed down to mono; 1 clip cut to 1 s \(longest 600\.0 s\)/);
  });

  it('evaluates the run on its validation split and on an audio folder', async () => {
    const own = await tl(['eval', '--run', 'run']);
    expect(own.code, own.err).toBe(0);
    expect(own.out).toMatch(/speech_w2v2_tiny on the validation split of the run: classes matched by name to the run \(2 of 2 present\)/);
    expect(own.out).toMatch(/accuracy [\d.]+% \(\d\/2\)/);
    const folder = await tl(['eval', '--run', 'run', '--data', 'words', '--json']);
    expect(folder.code, folder.err).toBe(0);
    const r = JSON.parse(folder.out) as { total: number; perClass: { class: string }[] };
    expect(r.total).toBe(10);
    expect(r.perClass.map((c) => c.class)).toEqual(['down', 'up']);
  });

  it('predicts the top classes of clips, skips what is not audio, and says the resampling once', async () => {
    const r = await tl(['predict', '--run', 'run', 'words/up/0.wav', 'words/up/stereo.wav', 'words/down/long.wav', 'words/up/notes.wav', 'words/down/empty.wav', '--top-k', '2']);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines.slice(0, 3)) expect(l).toMatch(/^words\/(up|down)\/\w+\.wav: (up|down) \d+\.\d%, (up|down) \d+\.\d%$/);
    expect(lines[3]).toMatch(/^words\/up\/notes\.wav: skipped \(not a readable audio file/);
    expect(lines[4]).toBe('words/down/empty.wav: skipped (empty clip (0 samples))');
    expect(r.err.split('\n')).toEqual(['2 clips resampled to 16000 Hz (from 44100, 8000 Hz); 1 clip mixed down to mono; 1 clip cut to 1 s (longest 600.0 s)', '2 of 5 clips could not be read and were skipped']);
  });

  it('refuses image flags and a folder that is no audio folder in one line', async () => {
    const r = await tl(['train', '--data', 'words', '--image-size', '32', '--out', 'run2']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: --image-size is for image models; speech_w2v2_tiny takes audio');
    expect(existsSync(p('run2'))).toBe(false);
    const m = await tl(['train', '--model', 'speech_w2v2_tiny', '--data', 'run', '--out', 'run3']);
    expect(m.code).toBe(2);
    expect(m.err).toMatch(/^error: --data run: expected an audio folder \(one sub-folder per class of \.wav, \.flac, \.mp3, \.ogg, \.oga files\)$/);
  });
});
