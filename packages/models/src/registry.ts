/**
 * The model ids of the CLI (`--model resnet18`) and what goes with each: a constructor at
 * the standard configuration and, for image models, the input size and normalisation that
 * their usual pretrained weights expect. Other families add theirs with `registerModel`.
 */
import { CifarResNet } from './arch/cifar-resnet.js';
import { DenseNet } from './arch/densenet.js';
import { EfficientNet } from './arch/efficientnet.js';
import { MobileNetV2 } from './arch/mobilenet-v2.js';
import { ResNet } from './arch/resnet.js';
import { VGG, VGG_LAYOUTS } from './arch/vgg.js';
import { VisionTransformer } from './arch/vit.js';
import type { ClassifierModel } from './nn/classifier.js';
import type { Module } from './nn/module.js';

export interface CreateModelOptions {
  /** Outputs of the classification head (default: the spec's `numClasses`). */
  numClasses?: number;
}

export interface ModelSpec<M extends Module = Module> {
  id: string;
  /** 'image' for the vision models; other families name theirs ('text'). */
  task: string;
  description: string;
  /** Head outputs of the standard configuration (1000 for ImageNet). */
  numClasses: number;
  create(opts?: CreateModelOptions): M;
}

export interface ImageModelSpec extends ModelSpec<ClassifierModel> {
  task: 'image';
  /** Side of the square input. */
  inputSize: number;
  /** Per-channel normalisation of [0, 1] RGB input: (x - mean) / std. */
  mean: [number, number, number];
  std: [number, number, number];
  /** Fraction of the resized image kept by the evaluation centre crop (timm's crop_pct). */
  cropPct: number;
  /** Input channels (default 3; grayscale models take 1 and use mean[0], std[0]). */
  channels?: number;
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

const registry = new Map<string, ModelSpec>();

/** Adds a model id; an id can be registered once. */
export function registerModel<S extends ModelSpec>(spec: S): S {
  if (registry.has(spec.id)) throw new Error(`registerModel: the id "${spec.id}" is already registered`);
  registry.set(spec.id, spec);
  return spec;
}

export function getModelSpec(id: string): ModelSpec {
  const spec = registry.get(id);
  if (!spec) throw new RangeError(`unknown model "${id}"; known models: ${[...registry.keys()].join(', ')}`);
  return spec;
}

export function isImageModelSpec(spec: ModelSpec): spec is ImageModelSpec {
  return spec.task === 'image';
}

/** Every registered spec, optionally only those of one task, in registration order. */
export function listModels(task?: string): ModelSpec[] {
  return [...registry.values()].filter((s) => task === undefined || s.task === task);
}

/** A freshly initialised model by id. */
export function createModel(id: string, opts: CreateModelOptions = {}): Module {
  return getModelSpec(id).create(opts);
}

function imageNet(id: string, description: string, build: (numClasses: number) => ClassifierModel, extra: Partial<ImageModelSpec> = {}): ImageModelSpec {
  return {
    id,
    task: 'image',
    description,
    numClasses: 1000,
    inputSize: 224,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    cropPct: 0.875,
    create: (opts = {}) => build(opts.numClasses ?? 1000),
    ...extra,
  };
}

const cifar = (depth: number): ImageModelSpec => ({
  id: `cifar_resnet${depth}`,
  task: 'image',
  description: `ResNet-${depth} for 32x32 CIFAR images (He et al. 2016, option A shortcuts)`,
  numClasses: 10,
  inputSize: 32,
  // The CIFAR-10 weights of akamaster/pytorch_resnet_cifar10 were trained on input
  // normalised with ImageNet's statistics.
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
  cropPct: 1,
  create: (opts = {}) => new CifarResNet({ depth, numClasses: opts.numClasses ?? 10 }),
});

export const IMAGE_MODELS: readonly ImageModelSpec[] = [
  imageNet('resnet18', 'ResNet-18 (torchvision / timm keys)', (n) => new ResNet({ block: 'basic', layers: [2, 2, 2, 2], numClasses: n })),
  imageNet('resnet34', 'ResNet-34 (torchvision / timm keys)', (n) => new ResNet({ block: 'basic', layers: [3, 4, 6, 3], numClasses: n })),
  imageNet('resnet50', 'ResNet-50 (torchvision / timm keys)', (n) => new ResNet({ block: 'bottleneck', layers: [3, 4, 6, 3], numClasses: n })),
  cifar(20),
  cifar(32),
  cifar(44),
  cifar(56),
  imageNet('mobilenet_v2', 'MobileNetV2, width 1.0 (torchvision keys)', (n) => new MobileNetV2({ numClasses: n })),
  imageNet('efficientnet_b0', 'EfficientNet-B0 (torchvision keys)', (n) => new EfficientNet({ numClasses: n })),
  imageNet('vgg16', 'VGG-16 (torchvision keys)', (n) => new VGG({ cfg: VGG_LAYOUTS.vgg16, numClasses: n })),
  imageNet('vgg16_bn', 'VGG-16 with BatchNorm (torchvision keys)', (n) => new VGG({ cfg: VGG_LAYOUTS.vgg16, batchNorm: true, numClasses: n })),
  imageNet('densenet121', 'DenseNet-121 (torchvision / timm keys)', (n) => new DenseNet({ numClasses: n })),
  // timm's ViT-B/16 weights (augreg) expect input normalised to [-1, 1].
  imageNet('vit_b_16', 'ViT-B/16 at 224 (timm vit_base_patch16_224 keys)', (n) => new VisionTransformer({ numClasses: n }), {
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    cropPct: 0.9,
  }),
];

for (const spec of IMAGE_MODELS) registerModel(spec);
