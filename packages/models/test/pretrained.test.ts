/**
 * fromPretrained in Node, through the platform part node.ts registers: one checkpoint from a
 * path, an http URL (a local server), `hf:` (the local Hub, into huggingface_hub's cache layout)
 * and a Blob loads to the same weights; the head is kept, resized or new as asked; bad sources
 * and checkpoints of another architecture are named in the error.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { ClassifierModel, DIGITS_RESNET14, fromPretrained, getModelSpec, StateDictError, type Module, type WeightsInfo } from '../src/node.js';
import { startFakeHub, type FakeHub } from './hub-server.js';

const COMMIT = 'd'.repeat(40);

let dir: string;
let path: string;
let bytes: Uint8Array;
let expected: Map<string, Float32Array | Int32Array>;
let other: Uint8Array;
let hub: FakeHub;
let server: Server;
let serverUrl: string;

beforeAll(async () => {
  await setup();
  dir = mkdtempSync(join(tmpdir(), 'tl-pretrained-'));
  A.manualSeed(7);
  const source = DIGITS_RESNET14.create();
  bytes = await source.toSafetensors();
  expected = new Map();
  for (const [k, t] of source.stateDict()) expected.set(k, await t.data());
  source.dispose();
  const cifar = getModelSpec('cifar_resnet20').create();
  other = await cifar.toSafetensors();
  cifar.dispose();
  path = join(dir, 'digits.safetensors');
  writeFileSync(path, bytes);
  hub = await startFakeHub({ 'test-org/digits': { 'model.safetensors': bytes, 'v2/weights.safetensors': bytes } }, { commit: COMMIT });
  server = createServer((req, res) => {
    if (req.url === '/weights/digits.safetensors') res.writeHead(200, { 'content-length': String(bytes.length) }).end(bytes);
    else res.writeHead(404).end();
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await Promise.all([hub?.close(), new Promise((ok) => (server ? server.close(ok) : ok(undefined)))]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every tensor of the model equals the checkpoint's, except those under `except`. */
async function expectCheckpoint(model: Module, except?: string): Promise<void> {
  const got = model.stateDict();
  expect([...got.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [k, t] of got) {
    if (except !== undefined && k.startsWith(`${except}.`)) continue;
    expect(await t.data(), k).toEqual(expected.get(k));
  }
}

describe('fromPretrained (Node)', () => {
  it('loads a path with the checkpoint head, and reports where the weights came from', async () => {
    const infos: WeightsInfo[] = [];
    const model = await fromPretrained('digits_resnet14', { weights: path, onWeights: (w) => infos.push(w) });
    await expectCheckpoint(model);
    expect(infos).toEqual([{ source: path, bytes: bytes.byteLength, tensors: expected.size, fromCache: false }]);
    model.dispose();
  });

  it('loads an http URL (string or URL) and resizes the head to numClasses', async () => {
    for (const weights of [`${serverUrl}/weights/digits.safetensors`, new URL(`${serverUrl}/weights/digits.safetensors`)]) {
      const model = await fromPretrained('digits_resnet14', { weights, numClasses: 3 });
      expect(model).toBeInstanceOf(ClassifierModel);
      expect((model as ClassifierModel).numClasses).toBe(3);
      expect(model.stateDict().get('linear.weight')!.shape).toEqual([3, 64]);
      await expectCheckpoint(model, 'linear');
      model.dispose();
    }
    await expect(fromPretrained('digits_resnet14', { weights: `${serverUrl}/weights/missing.safetensors` })).rejects.toThrow(/missing\.safetensors: 404/);
  });

  it('loads hf:org/name[/file] from the Hub into its cache, with progress', async () => {
    const cacheDir = join(dir, 'hub-cache');
    let progress = 0;
    const model = await fromPretrained('digits_resnet14', { weights: 'hf:test-org/digits', endpoint: hub.url, hub: { cacheDir }, onProgress: (n) => (progress = n) });
    await expectCheckpoint(model);
    model.dispose();
    expect(progress).toBe(bytes.byteLength);
    expect(existsSync(join(cacheDir, 'models--test-org--digits', 'snapshots', COMMIT, 'model.safetensors'))).toBe(true);
    const inFolder = await fromPretrained('digits_resnet14', { weights: `hf:test-org/digits@${COMMIT}/v2/weights.safetensors`, hub: { cacheDir, endpoint: hub.url } });
    await expectCheckpoint(inFolder);
    inFolder.dispose();
  });

  it('loads a Blob, and makes a new head on request even when the class count matches', async () => {
    A.manualSeed(1);
    const model = await fromPretrained('digits_resnet14', { weights: new Blob([bytes as Uint8Array<ArrayBuffer>]), numClasses: 5, newHead: true });
    await expectCheckpoint(model, 'linear');
    expect(await model.stateDict().get('linear.weight')!.data()).not.toEqual(expected.get('linear.weight'));
    model.dispose();
  });

  it('names the source and what was expected when it cannot load', async () => {
    const otherPath = join(dir, 'cifar20.safetensors');
    writeFileSync(otherPath, other);
    const err = await fromPretrained('digits_resnet14', { weights: otherPath }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateDictError);
    expect((err as Error).message).toContain(`${otherPath}: `);
    await expect(fromPretrained('digits_resnet14', { weights: 'opfs:models/x.safetensors' })).rejects.toThrow(/OPFS is the browser's file system; in Node pass a path, a URL or hf:org\/name/);
    await expect(fromPretrained('digits_resnet14', { weights: path, numClasses: 0 })).rejects.toThrow(/fromPretrained: numClasses must be a positive integer, got 0/);
    await expect(fromPretrained('digits_resnet14', { weights: join(dir, 'nope.safetensors') })).rejects.toThrow(/nope\.safetensors/);
  });
});
