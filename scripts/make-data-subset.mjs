#!/usr/bin/env node
// Writes data/, the small real data the README's test command reads, from the full copy in
// ../shared/data (or the folder given as the first argument), so a fresh clone tests itself.
// Exactly what the tests read and no more: the CIFAR ResNet-20/56 weights, the first 50 test
// JPEGs of each CIFAR-10 class, and the Fashion-MNIST images the transfer test and
// packages/train/fixtures/transfer_reference.py take (the first 6,000 training and the first
// 2,000 test images). data/README.md and data/fashion-mnist/LICENSE are written by hand.
//
//   node scripts/make-data-subset.mjs [path/to/shared/data]
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = resolve(process.argv[2] ?? join(root, '..', 'shared', 'data'));
const out = join(root, 'data');
const CIFAR_PER_CLASS = 50;
const FASHION = { train: 6000, t10k: 2000 };

if (!existsSync(join(src, 'pretrained'))) {
  throw new Error(`${src} has no pretrained/ folder: pass the folder that ../shared/data/README.md describes`);
}

mkdirSync(join(out, 'pretrained'), { recursive: true });
for (const f of ['cifar10-resnet20.safetensors', 'cifar10-resnet56.safetensors', 'LICENSE-akamaster-resnet-cifar10.txt']) {
  copyFileSync(join(src, 'pretrained', f), join(out, 'pretrained', f));
}

const classes = readdirSync(join(src, 'cifar10-test')).sort();
if (classes.length !== 10) throw new Error(`${src}/cifar10-test has ${classes.length} class folders, expected 10`);
for (const c of classes) {
  const files = readdirSync(join(src, 'cifar10-test', c)).filter((f) => f.endsWith('.jpg')).sort().slice(0, CIFAR_PER_CLASS);
  if (files.length !== CIFAR_PER_CLASS) throw new Error(`${src}/cifar10-test/${c} has ${files.length} JPEGs, expected at least ${CIFAR_PER_CLASS}`);
  mkdirSync(join(out, 'cifar10-test', c), { recursive: true });
  for (const f of files) copyFileSync(join(src, 'cifar10-test', c, f), join(out, 'cifar10-test', c, f));
}

/** The first `n` records of a gzipped IDX file (magic, big-endian dims, then the records). */
function idxHead(bytes, n) {
  const rank = bytes[3];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(4);
  if (n > count) throw new Error(`asked for ${n} records of an IDX file that holds ${count}`);
  let record = 1;
  for (let i = 1; i < rank; i++) record *= view.getUint32(4 + 4 * i);
  const header = 4 + 4 * rank;
  const head = bytes.slice(0, header + n * record);
  new DataView(head.buffer).setUint32(4, n);
  return head;
}

mkdirSync(join(out, 'fashion-mnist'), { recursive: true });
for (const [split, n] of Object.entries(FASHION)) {
  for (const kind of ['images-idx3-ubyte', 'labels-idx1-ubyte']) {
    const name = `${split}-${kind}.gz`;
    const full = gunzipSync(readFileSync(join(src, 'fashion-mnist', name)));
    writeFileSync(join(out, 'fashion-mnist', name), gzipSync(idxHead(full, n), { level: 9 }));
  }
}
console.log(`wrote ${out} from ${src}`);
