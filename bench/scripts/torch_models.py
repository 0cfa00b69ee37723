"""The networks of `pnpm bench:models` in PyTorch (here /usr/bin/python3: torch 1.13,
torchvision 0.14; on the device machine torch 2.x), for two jobs:

  export NET BATCH OUT.onnx      the forward pass as ONNX (opset 14), for onnxruntime's WebGPU EP
  time NET BATCH REPS [DEVICE]   PyTorch eager in float32 on DEVICE (cpu, the default, or cuda):
                                 forward (eval, no_grad) and an SGD training step, median
                                 milliseconds of REPS runs after one warm-up, as JSON

The CNNs and ViT-B/16 are torchvision's. transformers is not installed here, so BERT-base
and GPT-2 small are written out below with the same shapes and arithmetic (BERT: post-LN
encoder, GELU, tanh pooler; GPT-2: pre-LN causal decoder, tanh-GELU, last-token head).
Weights are random: the timings do not depend on them.
"""
import inspect
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

SEQ = 128
CLASSES = {"bert": 2, "gpt2": 2}


class SelfAttention(nn.Module):
    def __init__(self, width, heads, causal):
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if self.causal:
            mask = torch.ones(t, t, dtype=torch.bool).triu(1)
            s = s.masked_fill(mask, float("-inf"))
        a = s.softmax(-1) @ v
        return self.out(a.transpose(1, 2).reshape(b, t, d))


class Layer(nn.Module):
    def __init__(self, width, heads, pre_norm, causal, gelu):
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = SelfAttention(width, heads, causal)
        self.ln1 = nn.LayerNorm(width)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)
        self.gelu = gelu

    def mlp(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.gelu))

    def forward(self, x):
        if self.pre_norm:
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class Bert(nn.Module):
    def __init__(self, vocab=30522, width=768, layers=12, heads=12):
        super().__init__()
        self.word = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(512, width)
        self.token_type = nn.Embedding(2, width)
        self.ln = nn.LayerNorm(width)
        self.layers = nn.ModuleList([Layer(width, heads, False, False, "none") for _ in range(layers)])
        self.pooler = nn.Linear(width, width)
        self.classifier = nn.Linear(width, 2)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.ln(self.word(ids) + self.pos.weight[:t] + self.token_type.weight[0])
        for l in self.layers:
            x = l(x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


class Gpt2(nn.Module):
    def __init__(self, vocab=50257, width=768, layers=12, heads=12):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(1024, width)
        self.layers = nn.ModuleList([Layer(width, heads, True, True, "tanh") for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.score = nn.Linear(width, 2, bias=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe.weight[:t]
        for l in self.layers:
            x = l(x)
        return self.score(self.ln_f(x)[:, -1])


def build(net):
    tv = torchvision.models
    makers = {
        "resnet18": tv.resnet18, "resnet50": tv.resnet50, "mobilenet_v2": tv.mobilenet_v2,
        "efficientnet_b0": tv.efficientnet_b0, "vit_b_16": tv.vit_b_16, "bert": Bert, "gpt2": Gpt2,
    }
    torch.manual_seed(0)
    return makers[net]()


def inputs(net, batch):
    if net in CLASSES:
        ids = (1000 + (torch.arange(batch * SEQ) * 7919) % 28000).view(batch, SEQ)
        return ids, CLASSES[net]
    return torch.rand(batch, 3, 224, 224) * 2 - 1, 1000


def export(net, batch, out):
    model = build(net).eval()
    x, _ = inputs(net, batch)
    # Under no_grad, nn.MultiheadAttention (torchvision's ViT) takes its fused fast path,
    # aten::_native_multi_head_attention, which torch 1.13 cannot export; with gradients on it
    # runs the plain ops, the same computation.
    # torch 2.9+ exports through dynamo by default, which needs onnxscript and names the graph's
    # inputs its own way; the TorchScript exporter gives the same graph torch 1.13 gives.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.set_grad_enabled(net == "vit_b_16"):
        torch.onnx.export(model, (x,), out, opset_version=14, input_names=["input"], output_names=["logits"], **legacy)


def time_net(net, batch, reps, device):
    if device not in ("cpu", "cuda"):
        sys.exit(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("device cuda asked for, but torch.cuda.is_available() is False")
    # float32 throughout: cuDNN would otherwise run convolutions in TF32 on Ampere and later.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = build(net).to(device)
    x, classes = inputs(net, batch)
    x = x.to(device)
    labels = (torch.arange(batch) % classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            model(x)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        opt.step()

    out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "device": device}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    for name, fn, train in (("forward", forward, False), ("train", step, True)):
        model.train(train)
        fn()
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
        out[f"{name}_ms"] = statistics.median(times)
    return out


if __name__ == "__main__":
    cmd, net, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if cmd == "export":
        export(net, batch, sys.argv[4])
    elif cmd == "time":
        device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
        print(json.dumps(time_net(net, batch, int(sys.argv[4]), device)))
    else:
        sys.exit(f"unknown command {cmd}")
