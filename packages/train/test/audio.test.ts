/**
 * The audio data path: resampling against torchaudio.functional.resample (fixtures/
 * make_audio_fixtures.py), FLAC and Ogg decoding against torchaudio's loader, mixdown,
 * pad/crop, Wav2Vec2FeatureExtractor's normalisation, seeded augmentation, and audioFolder on
 * the bad inputs people have (not audio, an empty clip, stereo 44.1 kHz, a ten-minute file).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '@tl/models';
import { audioFile, audioFolder, augmentClip, mixdown, normalizeClip, padOrCrop, readClip, resampleAudio } from '../src/node.js';
import { tone, wav } from './wav-files.js';

const fx = parseSafetensors(readFileSync(new URL('../fixtures/audio_resample.safetensors', import.meta.url)));
const f32 = (k: string): Float32Array => Float32Array.from(fx.get(k).data);
const fixtureAudio = (name: string): string => new URL(`../fixtures/audio/${name}`, import.meta.url).pathname;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}


describe('resampleAudio against torchaudio.functional.resample', () => {
  for (const pair of ['44100_16000', '22050_16000', '8000_16000', '48000_16000', '16000_22050']) {
    it(`${pair.replace('_', ' Hz -> ')} Hz to 1e-5`, () => {
      const [a, b] = pair.split('_').map(Number) as [number, number];
      const y = resampleAudio(f32(`x.${pair}`), a, b);
      expect(maxAbsDiff(y, f32(`y.${pair}`))).toBeLessThan(1e-5);
    });
  }
  it('names a bad rate', () => {
    expect(() => resampleAudio(new Float32Array(4), 44100.5, 16000)).toThrow(/origRate must be a positive integer number of Hz, got 44100.5/);
  });
});

describe('decoding (audio-decode) against torchaudio\'s loader', () => {
  it('reads a stereo 22.05 kHz FLAC exactly and brings it to 16 kHz mono', async () => {
    const { clip, facts } = await readClip(fixtureAudio('stereo.flac'), { length: 16000 });
    expect(facts).toMatchObject({ rate: 22050, channels: 2, cropped: false });
    const want = padOrCrop(resampleAudio(mixdown([f32('flac.0'), f32('flac.1')]), 22050, 16000), 16000);
    expect(maxAbsDiff(clip, want)).toBeLessThan(5e-5);
  });
  it('reads an Ogg Vorbis clip to the decoder\'s precision', async () => {
    const { clip } = await readClip(fixtureAudio('mono.ogg'), { length: 4000 });
    const want = f32('ogg');
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = 0; i < 4000; i++) {
      dot += clip[i]! * want[i]!;
      na += clip[i]! ** 2;
      nb += want[i]! ** 2;
    }
    expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.99);
  });
});

describe('clip transforms', () => {
  it('mixdown averages channels, padOrCrop pads with zeros or keeps the start', () => {
    expect([...mixdown([Float32Array.of(1, 2), Float32Array.of(3, -2)])]).toEqual([2, 0]);
    expect(() => mixdown([new Float32Array(2), new Float32Array(3)])).toThrow(/differ in length \(2, 3\)/);
    expect([...padOrCrop(Float32Array.of(1, 2), 4)]).toEqual([1, 2, 0, 0]);
    expect([...padOrCrop(Float32Array.of(1, 2, 3), 2)]).toEqual([1, 2]);
  });
  it('normalises as Wav2Vec2FeatureExtractor: (x - mean) / sqrt(var + 1e-7)', () => {
    const x = Float32Array.of(1, 2, 3, 6);
    const y = normalizeClip(x);
    const want = [1, 2, 3, 6].map((v) => (v - 3) / Math.sqrt(3.5 + 1e-7));
    y.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6));
    expect([...normalizeClip(new Float32Array(3))]).toEqual([0, 0, 0]);
  });
  it('augments reproducibly by seed: shifted, noisier and partly zeroed, never longer', () => {
    const x = tone(16000, 16000, 440);
    const a = augmentClip(x, 7);
    expect(augmentClip(x, 7)).toEqual(a);
    expect(augmentClip(x, 8)).not.toEqual(a);
    expect(a.length).toBe(x.length);
    const shifted = augmentClip(x, 3, { noiseProb: 0, timeMasks: 0, gain: 0, maxShift: 0.1 });
    const offset = shifted.findIndex((v) => v !== 0);
    expect(offset).toBeLessThanOrEqual(1600);
    const noisy = augmentClip(new Float32Array(100).fill(0.5), 1, { noiseProb: 1, minSnrDb: 0, maxSnrDb: 0, maxShift: 0, timeMasks: 0, gain: 0 });
    expect(noisy.some((v) => Math.abs(v - 0.5) > 0.05)).toBe(true);
    const masked = augmentClip(new Float32Array(1000).fill(1), 2, { noiseProb: 0, maxShift: 0, gain: 0, timeMasks: 1, maxTimeMask: 0.5 });
    expect(masked.filter((v) => v === 0).length).toBeLessThanOrEqual(500);
  });
});

describe('audioFolder on the inputs people have', () => {
  let root = '';
  const lines: string[] = [];
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'tl-audio-'));
    for (const c of ['no', 'yes']) mkdirSync(join(root, c));
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(root, 'yes', `y${i}.wav`), wav([tone(16000, 16000, 300 + 50 * i)], 16000));
      writeFileSync(join(root, 'no', `n${i}.wav`), wav([tone(12000, 16000, 900 + 50 * i)], 16000));
    }
    writeFileSync(join(root, 'yes', 'stereo.wav'), wav([tone(44100, 44100, 300), tone(44100, 44100, 320)], 44100));
    writeFileSync(join(root, 'no', 'long.wav'), wav([tone(8000 * 600, 8000, 1000)], 8000));
    writeFileSync(join(root, 'no', 'empty.wav'), wav([new Float32Array(0)], 16000));
    writeFileSync(join(root, 'yes', 'notes.wav'), 'these are not samples');
    copyFileSync(fixtureAudio('stereo.flac'), join(root, 'yes', 'f.flac'));
    writeFileSync(join(root, 'yes', 'readme.txt'), 'ignored: not an audio extension');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('skips what is not audio or empty in one line each, says resampling, mixdown and cutting once', async () => {
    const r = await audioFolder(root, { log: (l) => lines.push(l), valSplit: 0.3, seed: 1 });
    expect(r.classes).toEqual(['no', 'yes']);
    expect(r.train.length + r.val!.length).toBe(9);
    expect(r.skipped).toHaveLength(2);
    expect(r.files.map((f) => f.slice(root.length + 1))).toEqual(['no/long.wav', 'no/n0.wav', 'no/n1.wav', 'no/n2.wav', 'yes/f.flac', 'yes/stereo.wav', 'yes/y0.wav', 'yes/y1.wav', 'yes/y2.wav']);
    expect(lines.filter((l) => l.startsWith('skipped ')).map((l) => l.split('/').at(-1))).toEqual([expect.stringMatching(/^empty\.wav: empty clip/), expect.stringMatching(/^notes\.wav: not a readable audio file \(Cannot detect audio format\)/)]);
    const said = lines.filter((l) => !l.startsWith('skipped '));
    expect(said).toHaveLength(1);
    expect(said[0]).toBe(`${root}: 3 clips resampled to 16000 Hz (from 8000, 22050, 44100 Hz); 2 clips mixed down to mono; 1 clip cut to 1 s (longest 600.0 s)`);
    const s = await r.train.get(0);
    expect(s.input).toHaveLength(16000);
    let mean = 0;
    for (const v of s.input) mean += v;
    expect(Math.abs(mean / 16000)).toBeLessThan(1e-4);
  });

  it('names a missing folder, a folder without class folders and a class outside the training set', async () => {
    await expect(audioFolder(join(root, 'nope'))).rejects.toThrow(/audio folder .*nope does not exist/);
    await expect(audioFolder(join(root, 'yes'))).rejects.toThrow(/has no class folders; expected/);
    await expect(audioFolder(root, { classes: ['yes'], log: () => {} })).rejects.toThrow(/class folder "no" that is not one of the 1 training classes \(yes\)/);
  });

  it('audioFile gives one normalised clip of the asked length', async () => {
    const x = await audioFile(join(root, 'yes', 'stereo.wav'), { length: 8000 });
    expect(x).toHaveLength(8000);
    await expect(audioFile(join(root, 'yes', 'notes.wav'))).rejects.toThrow(/notes\.wav: not a readable audio file/);
  });
});
