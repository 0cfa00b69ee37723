/**
 * The entry of the bench:models bundle for machines without the workspace (see pack.ts). In a
 * bundle TF.js's gradient registrations are imported as modules, where the workspace run
 * bundles them at start-up (training/tfjs-gradients.ts explains why it must there). TF.js's
 * Node build comes first: the first copy of tfjs-core to load makes the global engine, and
 * only that build's tensors carry the chained ops (x.cast(...)) the gradients call.
 */
import { version_core } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '../models.js';

/** Exported so that esbuild keeps the first import: tfjs-core declares no side effects. */
export const tfjsVersion = version_core;
