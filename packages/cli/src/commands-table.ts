/** Every `tl` command with its flags (type, group, default, meaning) and examples: what the
 * parser accepts and what `--help` prints come from this one table. */
import type { FlagDefs } from './flags.js';

export interface CommandDef {
  usage: string;
  summary: string;
  flags: FlagDefs;
  examples: string[];
  /** Lines printed after the flags. */
  notes?: string[];
}

const help: FlagDefs = { help: { type: 'boolean', group: 'options', help: 'print this help and exit (also -h)' } };
const json: FlagDefs = { json: { type: 'boolean', group: 'output', help: 'print JSON on stdout instead of a table', default: 'off' } };

/** The model and weights of `tl eval` / `tl predict`, when they score a checkpoint instead of a run. */
/** A PEFT LoRA adapter on top of the checkpoint, for `tl eval` / `tl predict`. */
const adapterFlag: FlagDefs = {
  adapter: { type: 'string', group: 'model', value: 'folder', help: "a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) merged into the model's weights first", default: 'none' },
};

const checkpointFlags: FlagDefs = {
  run: { type: 'string', group: 'model', value: 'folder', help: 'a run folder written by tl train (its model, weights, classes and input size)' },
  model: { type: 'string', group: 'model', value: 'id', help: 'an architecture id from `tl models`, with --weights, instead of --run' },
  weights: { type: 'string', group: 'model', value: 'file|hf:org/name', help: 'the checkpoint for --model: a .safetensors path, an http(s) URL or hf:org/name[@revision][/file]' },
  classes: { type: 'string', group: 'model', value: 'a,b,c', help: "class names of the checkpoint's outputs, in index order", default: "the checkpoint's metadata, else the model's known labels" },
  'image-size': { type: 'number', group: 'data', value: 'pixels', help: 'side of the square model input', default: "the run's, else the model's input size" },
};

export const TRAIN_FLAGS: FlagDefs = {
  data: { type: 'string', group: 'data', value: 'path', help: 'an image folder (one sub-folder per class), a .csv/.jsonl of path,label (text models: text,label), an *-images-idx3-ubyte(.gz) file, or an audio folder (one sub-folder per class of .wav/.flac/.mp3/.ogg; with no --model it starts from the shipped speech backbone speech_w2v2_tiny)' },
  val: { type: 'string', group: 'data', value: 'path', help: 'a separate validation set in the same form as --data', default: 'a split of --data' },
  'val-split': { type: 'number', group: 'data', value: 'fraction', help: 'fraction of --data held out for validation, in [0, 1)', default: '0.2' },
  'image-size': { type: 'number', group: 'data', value: 'pixels', help: 'side of the square model input', default: "the model's input size (`tl models`)" },
  augment: { type: 'boolean', group: 'data', help: 'random flips, crops (60-100 % of the area) and colour jitter on training images', default: 'off' },
  'auto-augment': { type: 'string', group: 'data', value: 'trivial', help: "TrivialAugmentWide on training images (alone: with torchvision's RandomResizedCrop and flips)", default: 'off' },
  'random-erasing': { type: 'number', group: 'data', value: 'p', help: 'erase a random rectangle of a training image with probability p (RandomErasing)', default: 'off' },
  mixup: { type: 'number', group: 'data', value: 'alpha', help: 'mixup of training batches, weights from Beta(alpha, alpha), soft targets (0.2 is usual)', default: 'off' },
  cutmix: { type: 'number', group: 'data', value: 'alpha', help: 'CutMix of training batches (1.0 is usual); with --mixup, each batch gets one of the two', default: 'off' },
  'num-classes': { type: 'number', group: 'data', value: 'n', help: 'outputs of the new head', default: 'the classes found in --data' },
  'text-column': { type: 'string', group: 'data', value: 'name', help: 'text models: the column of the texts', default: 'text' },
  'text-pair-column': { type: 'string', group: 'data', value: 'name', help: 'text models: the column of the second text of a pair', default: 'none' },
  'label-column': { type: 'string', group: 'data', value: 'name', help: 'the column of the labels in a .csv/.jsonl list or a metadata.csv', default: 'label (images: also class, category, target)' },
  workers: { type: 'number', group: 'data', value: 'n', help: 'image decode threads (decode, resize and augmentation off the main thread); 0 decodes on the main thread', default: 'cores - 1, at most 4' },
  'cache-mb': { type: 'number', group: 'data', value: 'MB', help: 'memory for decoded images (least recently used evicted); 0 decodes every image every epoch', default: '1024' },
  'max-pixels': { type: 'number', group: 'data', value: 'n', help: 'images with more pixels are skipped unread (by their header) and listed in skipped-images.tsv', default: '40000000' },
  'class-weights': { type: 'string', group: 'optimisation', value: 'balanced', help: "weight each class's loss by n / (classes x its count), as scikit-learn's 'balanced'", default: 'off' },
  task: { type: 'string', group: 'model', value: 'causal-lm|text2text', help: 'what the model learns: causal-lm (next-token prediction with a Llama or GPT-2 LM: --data a .txt file or a .csv/.jsonl column), text2text (T5 on --source-column -> --target-column pairs)', default: 'classification' },
  'source-column': { type: 'string', group: 'data', value: 'name', help: 'text2text: the column of the source texts', default: 'source' },
  'target-column': { type: 'string', group: 'data', value: 'name', help: 'text2text: the column of the target texts', default: 'target' },
  'max-source-length': { type: 'number', group: 'data', value: 'tokens', help: 'text2text: tokens per source (longer ones are cut)', default: '128' },
  'max-target-length': { type: 'number', group: 'data', value: 'tokens', help: 'text2text: tokens per target (longer ones are cut and counted); also the generation limit', default: '32' },
  'prompt-column': { type: 'string', group: 'data', value: 'name', help: 'causal-lm: a column the text is conditioned on, with no loss on it (prompt → completion)', default: 'none: the loss is on all text' },
  'max-length': { type: 'number', group: 'data', value: 'tokens', help: 'text models: tokens per text', default: "128, or the model's limit if smaller" },
  'labels-per-class': { type: 'number', group: 'data', value: 'n', help: 'default job only: training labels per digit', default: '5' },
  'test-per-class': { type: 'number', group: 'data', value: 'n', help: 'default job only: test images per digit', default: '400' },
  model: { type: 'string', group: 'model', value: 'id', help: 'the architecture (`tl models` lists them)', default: 'none: without --model and --data, the embedded default job runs' },
  weights: { type: 'string', group: 'model', value: 'file|hf:org/name', help: 'pretrained weights: a .safetensors path, an http(s) URL, hf:org/name[@revision][/file] (text models: also a save_pretrained folder)', default: 'random init' },
  'config-json': { type: 'string', group: 'model', value: 'file', help: 'text models trained from scratch: a config.json with a tokenizer.json beside it' },
  dropout: { type: 'number', group: 'model', value: 'p', help: 'dropout before the classifier, in [0, 1)', default: '0' },
  freeze: { type: 'string', group: 'strategy', value: 'none|backbone|glob', help: 'what does not train: nothing, everything but the head, or parameters matching a glob', default: 'none' },
  'unfreeze-at': { type: 'list', group: 'strategy', value: 'epoch:glob[:lr]', help: 'unfreeze parameters matching glob at an epoch (repeatable), e.g. 3:layer4:1e-4' },
  'head-lr': { type: 'number', group: 'strategy', value: 'rate', help: 'a learning rate of its own for the head', default: '--lr' },
  'layer-decay': { type: 'number', group: 'strategy', value: 'factor', help: 'layer-wise lr decay in (0, 1]: each block down gets this factor more', default: 'off' },
  'cache-features': { type: 'boolean', group: 'strategy', help: "with a frozen backbone, compute its features once and train the head on them", default: 'off' },
  lora: { type: 'string', group: 'strategy', value: 'r=8,alpha=16,targets=query,value', help: 'LoRA adapters on the named modules (suffix match, as PEFT) plus the head, the rest frozen; writes PEFT\'s adapter_config.json and adapter_model.safetensors; [,dropout=p]', default: 'off' },
  epochs: { type: 'number', group: 'optimisation', value: 'n', help: 'passes over the training data', default: '5 (text models 3)' },
  'batch-size': { type: 'number', group: 'optimisation', value: 'n', help: 'samples per step', default: '32' },
  lr: { type: 'number', group: 'optimisation', value: 'rate', help: 'peak learning rate', default: '1e-3 (text models 5e-5)' },
  optimizer: { type: 'string', group: 'optimisation', value: 'sgd|adam|adamw', help: 'the optimiser', default: 'adamw' },
  momentum: { type: 'number', group: 'optimisation', value: 'm', help: 'SGD momentum, in [0, 1)', default: '0.9' },
  'weight-decay': { type: 'number', group: 'optimisation', value: 'wd', help: 'weight decay (decoupled for adamw)', default: '0.01' },
  schedule: { type: 'string', group: 'optimisation', value: 'name', help: 'constant, step, cosine, onecycle, plateau or linear', default: 'cosine' },
  warmup: { type: 'number', group: 'optimisation', value: 'steps', help: 'linear warm-up steps of the cosine schedule', default: '0' },
  'label-smoothing': { type: 'number', group: 'optimisation', value: 'eps', help: 'label smoothing of the cross-entropy, in [0, 1)', default: '0' },
  'grad-clip': { type: 'number', group: 'optimisation', value: 'norm', help: 'clip the global gradient norm to this', default: 'off' },
  accumulate: { type: 'number', group: 'optimisation', value: 'n', help: 'micro-batches per optimizer step: the step sees batch-size × n samples', default: '1' },
  fp16: { type: 'boolean', group: 'optimisation', help: 'mixed precision: matmul and linear layers in float16 with float32 weights, and dynamic loss scaling (needs shader-f16; float32 otherwise)', default: 'off' },
  'gradient-checkpointing': { type: 'boolean', group: 'optimisation', help: "recompute each block's activations in backward instead of keeping them: less GPU memory for about a third more time (transformers, ResNets)", default: 'off' },
  teacher: { type: 'string', group: 'strategy', value: 'folder|file', help: "distil from a trained teacher: a run folder, or a weights file (its architecture --teacher-model)", default: 'none' },
  'teacher-model': { type: 'string', group: 'strategy', value: 'id', help: 'the architecture of a --teacher weights file', default: '--model' },
  temperature: { type: 'number', group: 'strategy', value: 'T', help: "softmax temperature of the teacher's and student's outputs in the distillation loss", default: '4' },
  alpha: { type: 'number', group: 'strategy', value: 'weight', help: "weight in [0, 1] of the teacher's term; 1 - alpha weighs the labels", default: '0.5' },
  'early-stop': { type: 'number', group: 'optimisation', value: 'epochs', help: 'stop after this many epochs without a better validation loss', default: 'off' },
  seed: { type: 'number', group: 'optimisation', value: 'n', help: 'seed of the initialisation, data order and split', default: '0' },
  out: { type: 'string', group: 'output', value: 'folder', help: 'the run folder (config.json, model.safetensors, metrics.jsonl, report.html, checkpoint/)', default: 'runs/<model>-<date>-<time>, the default job runs/default-<date>-<time>: a new folder each run' },
  overwrite: { type: 'boolean', group: 'output', help: 'replace the run in an existing --out folder; without it tl refuses (exit 2) and leaves the folder as it is', default: 'off' },
  resume: { type: 'string', group: 'output', value: 'folder', help: "continue a run folder from its last checkpoint (its config.json, with any flags given here on top)" },
  config: { type: 'string', group: 'output', value: 'file', help: 'read flags from a JSON file (flags on the command line win)', default: 'tl.config.json if present' },
  ...help,
};

export const COMMANDS: Record<string, CommandDef> = {
  train: {
    usage: 'tl train [--model <id> --data <path> ...]',
    summary: 'fine-tune a model on your data into a run folder; with no arguments, the embedded default job',
    flags: TRAIN_FLAGS,
    examples: [
      'tl train                                            # the embedded default job: three arms side by side',
      'tl train --model cifar_resnet20 --weights data/pretrained/cifar10-resnet20.safetensors --data ./shapes --freeze backbone --epochs 3 --out runs/shapes',
      'tl train --model resnet18 --weights hf:timm/resnet18.a1_in1k --data ./flowers --freeze backbone --unfreeze-at 3:layer4 --epochs 6',
      'tl train --model distilbert --weights hf:distilbert/distilbert-base-uncased --data reviews.csv --text-column review --label-column stars',
      'tl train --model bert --weights hf:google-bert/bert-base-uncased --data reviews.csv --lora r=8,alpha=16,targets=query,value',
      'tl train --task causal-lm --model llama --weights ./tiny-llama --data stories.txt --max-length 128 --epochs 2',
      'tl train --task causal-lm --model gpt2 --weights hf:openai-community/gpt2 --data qa.csv --prompt-column question --text-column answer',
      'tl train --data ./words --out runs/words                     # an audio folder: fine-tunes the shipped speech backbone',
    ],
    notes: [
      'An existing --out folder is never overwritten: tl exits with code 2 and names the folder unless --overwrite is given;',
      'everything (flags, data, weights) is checked before the run folder is written.',
    ],
  },
  eval: {
    usage: 'tl eval (--run <folder> | --model <id> --weights <file|hf:org/name>) [--data <path>] [--json]',
    summary: "score a run or a pretrained checkpoint on labelled data; classes are matched by name",
    flags: {
      ...checkpointFlags,
      ...adapterFlag,
      data: { type: 'string', group: 'data', value: 'path', help: 'labelled data: an image folder (audio runs: an audio folder), a .csv/.jsonl list (text runs: texts and labels; causal-lm runs: text; text2text runs: source and target pairs)', default: "the run's validation set (required with --model)" },
      'batch-size': { type: 'number', group: 'optimisation', value: 'n', help: 'samples per forward pass', default: "the run's, else 32" },
      ...json,
      ...help,
    },
    examples: [
      'tl eval --run runs/shapes',
      'tl eval --model cifar_resnet20 --weights data/pretrained/cifar10-resnet20.safetensors --data data/cifar10-test --json',
      'tl eval --run runs/shapes --data ./more-shapes --json',
      'tl eval --run runs/t5-sentiment                 # loss, exact match, ROUGE-L and chrF of greedy generation',
    ],
    notes: [
      "Folder (or label) names must be classes the model knows; a subset is fine. Unknown names are refused with the model's class list.",
      'A checkpoint without class names and a model without known labels take the folder names by position (the output says so).',
    ],
  },
  predict: {
    usage: 'tl predict (--run <folder> | --model <id> --weights <file|hf:org/name>) <images or audio clips...> [--top-k 3] [--json]',
    summary: 'classify images or audio clips (or texts, for a text run); generate text from a causal LM or T5',
    flags: {
      ...checkpointFlags,
      ...adapterFlag,
      'top-k': { type: 'number', group: 'output', value: 'k', help: 'classes shown per input', default: '3' },
      logits: { type: 'boolean', group: 'output', help: 'add the raw logits to --json', default: 'off' },
      text: { type: 'list', group: 'data', value: 'text', help: 'text runs: a text to classify, continue (causal LMs) or generate a target from (text2text runs, --model t5) (repeatable)' },
      'text-pair': { type: 'list', group: 'data', value: 'text', help: 'text runs trained on pairs: the second text of each --text (repeatable)' },
      'max-new-tokens': { type: 'number', group: 'output', value: 'n', help: 'causal LMs (a causal-lm run, --model llama, or gpt2 with this flag) and T5 (a text2text run, --model t5): generate up to n tokens for each --text', default: '20 (a text2text run: its --max-target-length)' },
      sample: { type: 'boolean', group: 'output', help: 'generation: sample the next token (with --temperature, --top-k, --top-p, --seed) instead of taking the most likely', default: 'off: greedy' },
      temperature: { type: 'number', group: 'output', value: 't', help: 'generation with --sample: divides the logits', default: '1' },
      'top-p': { type: 'number', group: 'output', value: 'p', help: 'generation with --sample: keep the most likely tokens up to probability p (with --top-k: the k most likely)', default: '1' },
      seed: { type: 'number', group: 'output', value: 'n', help: 'generation with --sample: the sampler\'s seed', default: '0' },
      'num-beams': { type: 'number', group: 'output', value: 'n', help: 'generation: beam search with n beams', default: '1: greedy' },
      ...json,
      ...help,
    },
    examples: [
      'tl predict --run runs/shapes red.png blue.png --top-k 2',
      'tl predict --run runs/words take1.wav take2.flac            # an audio run: the top classes of each clip',
      'tl predict --model cifar_resnet20 --weights data/pretrained/cifar10-resnet20.safetensors cat.jpg --json',
      'tl predict --run runs/reviews --text "great value" --text "broke in a day"',
      'tl predict --run runs/stories --text "Once upon a time" --max-new-tokens 40 --sample --top-p 0.9 --seed 1',
      'tl predict --model gpt2 --weights hf:openai-community/gpt2 --text "The weather today" --max-new-tokens 20 --num-beams 4',
      'tl predict --run runs/t5-sentiment --text "A wonderful, moving film."',
      'tl predict --model t5 --weights hf:google-t5/t5-small --text "translate English to German: Thank you." --num-beams 4',
    ],
  },
  adapt: {
    usage: 'tl adapt (--run <folder> | --model <id> --weights <file|hf:org/name>) --data <folder> --out <folder>',
    summary: "AdaBN: re-estimate a model's BatchNorm statistics on unlabelled images of a new domain",
    flags: {
      ...checkpointFlags,
      data: { type: 'string', group: 'data', value: 'folder', help: 'unlabelled images of the target domain (sub-folders are read too; their names are ignored)' },
      'batch-size': { type: 'number', group: 'optimisation', value: 'n', help: "images per forward pass: each batch's statistics are one term of the average", default: "the run's, else 32" },
      out: { type: 'string', group: 'output', value: 'folder', help: 'where model.safetensors (and a run\'s config.json) is written (a new or empty folder)' },
      overwrite: { type: 'boolean', group: 'output', help: 'write into an --out folder that already holds files', default: 'off' },
      ...help,
    },
    examples: [
      'tl adapt --model cifar_resnet20 --weights data/pretrained/cifar10-resnet20.safetensors --data ./night-photos --out adapted/night',
      'tl eval --model cifar_resnet20 --weights adapted/night/model.safetensors --data ./night-labelled',
      'tl adapt --run runs/shapes --data ./new-camera --out runs/shapes-new-camera',
    ],
    notes: [
      'The weights are not changed, only the running mean and variance of every BatchNorm (a cumulative average over the batches, as PyTorch\'s momentum=None);',
      'no label is read. A model without BatchNorm is refused.',
    ],
  },
  models: {
    usage: 'tl models [--task image|text] [--json]',
    summary: 'list every architecture id: task, input size, parameters, checkpoint layouts it loads',
    flags: {
      task: { type: 'string', group: 'options', value: 'image|text', help: 'only the models of one task', default: 'all' },
      ...json,
      ...help,
    },
    examples: ['tl models', 'tl models --task text', 'tl models --json'],
  },
  inspect: {
    usage: 'tl inspect <file.safetensors|hf:org/name>',
    summary: 'the tensors, metadata and matching architectures of a checkpoint',
    flags: { ...json, ...help },
    examples: ['tl inspect data/pretrained/cifar10-resnet20.safetensors', 'tl inspect hf:timm/resnet18.a1_in1k --json'],
  },
  export: {
    usage: 'tl export --run <folder> --out <folder>',
    summary: 'a folder PyTorch / transformers load: model.safetensors and config.json',
    flags: {
      run: { type: 'string', group: 'model', value: 'folder', help: 'the run folder to export' },
      out: { type: 'string', group: 'output', value: 'folder', help: 'where to write model.safetensors and config.json (a new or empty folder)' },
      overwrite: { type: 'boolean', group: 'output', help: 'write into an --out folder that already holds files', default: 'off' },
      ...help,
    },
    examples: ['tl export --run runs/shapes --out exported/shapes'],
  },
  pretrain: {
    usage: 'tl pretrain [--epochs 6 --batch-size 128 --lr 0.1 --seed 0 --out <file>]',
    summary: 'retrain the embedded weights on digits 0-4',
    flags: {
      epochs: { type: 'number', group: 'optimisation', value: 'n', help: 'passes over digits 0-4', default: '6' },
      'batch-size': { type: 'number', group: 'optimisation', value: 'n', help: 'samples per step', default: '128' },
      lr: { type: 'number', group: 'optimisation', value: 'rate', help: 'one-cycle peak learning rate', default: '0.1' },
      seed: { type: 'number', group: 'optimisation', value: 'n', help: 'seed', default: '0' },
      out: { type: 'string', group: 'output', value: 'file', help: 'where to write the weights', default: 'the embedded weights file' },
      ...help,
    },
    examples: ['tl pretrain', 'tl pretrain --epochs 10 --out /tmp/digits04.safetensors'],
  },
  doctor: {
    usage: 'tl doctor',
    summary: 'the WebGPU adapter, its features and limits, or what to install',
    flags: { ...help },
    examples: ['tl doctor'],
  },
  bench: {
    usage: 'tl bench [--quick] [--only matmul,linear,conv,softmax]',
    summary: 'kernel benchmarks against TensorFlow.js',
    flags: {
      quick: { type: 'boolean', group: 'options', help: 'fewer sizes and repeats', default: 'off' },
      only: { type: 'string', group: 'options', value: 'kernels', help: 'a comma-separated list of kernels', default: 'all' },
      ...help,
    },
    examples: ['tl bench --quick', 'tl bench --only matmul'],
  },
  tune: {
    usage: 'tl tune --model <id> [--batch-size 8 --image-size <px>] | --shapes MxKxN[,...]',
    summary: "measure the matmul kernel variants and 3x3 convolution algorithms on this adapter and store the fastest per shape class",
    flags: {
      model: { type: 'string', group: 'model', value: 'id', help: "an image model: one forward and backward step on random input records its products and convolutions" },
      'batch-size': { type: 'number', group: 'data', value: 'n', help: 'samples in that step (use the batch size of the training run)', default: '8' },
      'image-size': { type: 'number', group: 'data', value: 'pixels', help: 'side of the square input', default: "the model's input size" },
      shapes: { type: 'string', group: 'options', value: 'MxKxN,...', help: 'products [M, K] x [K, N] to tune, besides or instead of --model' },
      ...json,
      ...help,
    },
    examples: ['tl tune --model resnet18 --batch-size 32', 'tl tune --shapes 256x512x1000,64x64x64', 'TL_AUTOTUNE=1 tl train ...'],
    notes: [
      'Choices are kept per adapter and driver in $TL_CACHE/autotune.json, else $XDG_CACHE_HOME/tl/autotune.json (~/.cache/tl);',
      'every run then uses them. TL_AUTOTUNE=1 measures shape classes a run meets that have no choice yet.',
    ],
  },
  help: {
    usage: 'tl help [command]',
    summary: 'this overview, or the help of one command',
    flags: { ...help },
    examples: ['tl help', 'tl help eval'],
  },
};
