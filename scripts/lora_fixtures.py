"""PyTorch references of LoRA for packages/models/test/lora.test.ts. PEFT is not installable
here, so this is LoRA with PEFT's math written out: y = base(x) + B(A(dropout(x))) * alpha / r;
for a Conv2d, A is a conv with the base's kernel, stride and padding and r output channels and
B a 1x1 conv; for transformers' Conv1D (weight [in, out]) the update is transposed when merged
(fan_in_fan_out). Each case writes the base weights, the adapter exactly as PEFT saves it
(keys base_model.model.<module>.lora_A.weight, adapter name dropped) with its config, an
input, the output, the adapter's gradients under sum(y * gout), and the merged base weights
(W + B @ A * scaling, PEFT's get_delta_weight for convolutions). Run with /usr/bin/python3
(torch 1.13) from the repository root."""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
from safetensors_write import save  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "packages", "models", "test", "fixtures", "lora")


class Conv1D(nn.Module):
    """transformers' Conv1D: y = x @ weight + bias with weight [nx, nf]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dense = nn.Linear(d, d)
        self.d = d

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d), -1)
        return self.dense(a @ v)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 1)
        self.conv3 = nn.Conv2d(5, 4, (3, 2), stride=(1, 2), padding=(1, 0), bias=False)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class GPT2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(12, 4)
        self.attn.c_proj = Conv1D(4, 12)

    def forward(self, x):
        return self.attn.c_proj(torch.tanh(self.attn.c_attn(x)))


class LoraRef(nn.Module):
    """The base layer plus a LoRA update, in PEFT's layout."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        if isinstance(base, nn.Conv2d):
            self.lora_A = nn.Conv2d(base.in_channels, r, base.kernel_size, base.stride, base.padding, bias=False)
            self.lora_B = nn.Conv2d(r, base.out_channels, 1, 1, bias=False)
        else:
            fan_in_fan_out = isinstance(base, Conv1D)
            n_in, n_out = base.weight.shape if fan_in_fan_out else base.weight.shape[::-1]
            self.lora_A = nn.Linear(n_in, r, bias=False)
            self.lora_B = nn.Linear(r, n_out, bias=False)
        # B nonzero (a trained adapter), so the update and both gradients are exercised.
        with torch.no_grad():
            self.lora_B.weight.normal_(0, 0.3)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling

    def delta_weight(self):
        a, b = self.lora_A.weight, self.lora_B.weight
        if isinstance(self.base, nn.Conv2d):
            if self.base.kernel_size == (1, 1):
                return (b.squeeze(3).squeeze(2) @ a.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3) * self.scaling
            return F.conv2d(a.permute(1, 0, 2, 3), b).permute(1, 0, 2, 3) * self.scaling
        d = b @ a * self.scaling
        return d.T if isinstance(self.base, Conv1D) else d


def inject(model, targets, r, alpha):
    wrapped = {}
    for name, m in list(model.named_modules()):
        if name in targets:
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            w = LoraRef(m, r, alpha)
            setattr(parent, name.rsplit(".", 1)[-1], w)
            wrapped[name] = w
    return wrapped


def case(tag, model, x, targets, target_modules, r, alpha):
    base_state = {f"base.{k}": v.clone() for k, v in model.state_dict().items()}
    wrapped = inject(model, targets, r, alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    adapter = {}
    for name, w in wrapped.items():
        w.lora_A.weight.requires_grad_(True)
        w.lora_B.weight.requires_grad_(True)
        adapter[f"base_model.model.{name}.lora_A.weight"] = w.lora_A.weight
        adapter[f"base_model.model.{name}.lora_B.weight"] = w.lora_B.weight
    y = model(x)
    gout = torch.randn_like(y)
    (y * gout).sum().backward()
    out = dict(base_state)
    out["x"], out["gout"], out["y"] = x, gout, y.detach()
    for k, v in adapter.items():
        out[f"grad.{k}"] = v.grad
    with torch.no_grad():
        for name, w in wrapped.items():
            out[f"merged.{name}.weight"] = w.base.weight + w.delta_weight()
    save(os.path.join(OUT, f"{tag}.safetensors"), out)
    save(os.path.join(OUT, f"{tag}_adapter_model.safetensors"), adapter, {"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "revision": None,
        "inference_mode": True, "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": target_modules,
        "modules_to_save": None, "fan_in_fan_out": any(isinstance(w.base, Conv1D) for w in wrapped.values()),
        "bias": "none", "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
    }
    with open(os.path.join(OUT, f"{tag}_adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    case("attention", Attention(8), torch.randn(2, 5, 8), ["query", "value"], ["query", "value"], 4, 8)
    case("conv", ConvNet(), torch.randn(2, 3, 9, 9), ["conv1", "conv3"], "conv[13]", 2, 4)
    case("gpt2", GPT2Block(), torch.randn(2, 3, 4), ["attn.c_attn"], ["c_attn"], 2, 16)


if __name__ == "__main__":
    main()
