"""PyTorch references of T5 for packages/models/test/t5.test.ts. transformers is not installed
here, so this is T5ForConditionalGeneration written out with its module names, so that the state
dict has the keys `save_pretrained` writes: T5's RMS layer norm (no centring, no bias), unscaled
attention with a learned bias per relative-position bucket (block 0 of each stack; bidirectional
buckets in the encoder, causal in the decoder), ReLU or gated-GELU (gelu_new) feed-forward, the
tied head's d_model**-0.5 rescale, and the loss from `labels` (decoder inputs = labels shifted
right from decoder_start_token_id = pad, -100 read as pad and ignored by the cross-entropy).

For each variant (t5: t5-small's layout; t5-v1_1: flan's gated GELU, untied head) it writes a
folder as save_pretrained leaves it (config.json, a small Unigram tokenizer.json, model.safetensors without the tied copies
encoder/decoder.embed_tokens and, when tied, lm_head) and reference.safetensors: the inputs,
float64 logits, loss and every parameter's gradient of the loss, and the buckets of t5-small's
and this configuration's relative positions. Run with /usr/bin/python3 (torch 1.13) from the
repository root."""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
from safetensors_write import save  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "packages", "models", "test", "fixtures", "t5")


def bucket(rel, bidirectional, num_buckets, max_distance):
    """transformers' _relative_position_bucket, written from its definition."""
    out = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        out += (rel > 0).long() * num_buckets
        n = rel.abs()
    else:
        n = -torch.min(rel, torch.zeros_like(rel))
    max_exact = num_buckets // 2
    small = n < max_exact
    large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return out + torch.where(small, n, large)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, c, is_decoder, has_bias):
        super().__init__()
        inner = c["num_heads"] * c["d_kv"]
        self.c, self.is_decoder = c, is_decoder
        self.q = nn.Linear(c["d_model"], inner, bias=False)
        self.k = nn.Linear(c["d_model"], inner, bias=False)
        self.v = nn.Linear(c["d_model"], inner, bias=False)
        self.o = nn.Linear(inner, c["d_model"], bias=False)
        if has_bias:
            self.relative_attention_bias = nn.Embedding(c["relative_attention_num_buckets"], c["num_heads"])

    def bias(self, q, k):
        rel = torch.arange(k)[None, :] - torch.arange(q)[:, None]
        b = bucket(rel, not self.is_decoder, self.c["relative_attention_num_buckets"], self.c["relative_attention_max_distance"])
        return self.relative_attention_bias(b).permute(2, 0, 1)[None]

    def forward(self, x, bias, kv=None):
        h, d = self.c["num_heads"], self.c["d_kv"]
        src = x if kv is None else kv
        split = lambda t: t.view(t.shape[0], t.shape[1], h, d).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(src)), split(self.v(src))
        scores = q @ k.transpose(-1, -2)
        if bias is not None:
            scores = scores + bias
        ctx = F.softmax(scores, -1) @ v
        return self.o(ctx.transpose(1, 2).reshape(x.shape[0], x.shape[1], h * d))


class DenseReluDense(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gated = c["feed_forward_proj"].startswith("gated")
        if self.gated:
            self.wi_0 = nn.Linear(c["d_model"], c["d_ff"], bias=False)
            self.wi_1 = nn.Linear(c["d_model"], c["d_ff"], bias=False)
        else:
            self.wi = nn.Linear(c["d_model"], c["d_ff"], bias=False)
        self.wo = nn.Linear(c["d_ff"], c["d_model"], bias=False)

    def forward(self, x):
        if self.gated:
            return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))
        return self.wo(F.relu(self.wi(x)))


class LayerSelf(nn.Module):
    def __init__(self, c, is_decoder, has_bias):
        super().__init__()
        self.SelfAttention = Attention(c, is_decoder, has_bias)
        self.layer_norm = RMSNorm(c["d_model"], c["layer_norm_epsilon"])

    def forward(self, x, bias):
        return x + self.SelfAttention(self.layer_norm(x), bias)


class LayerCross(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.EncDecAttention = Attention(c, True, False)
        self.layer_norm = RMSNorm(c["d_model"], c["layer_norm_epsilon"])

    def forward(self, x, enc, mask):
        return x + self.EncDecAttention(self.layer_norm(x), mask, enc)


class LayerFF(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.DenseReluDense = DenseReluDense(c)
        self.layer_norm = RMSNorm(c["d_model"], c["layer_norm_epsilon"])

    def forward(self, x):
        return x + self.DenseReluDense(self.layer_norm(x))


class Block(nn.Module):
    def __init__(self, c, is_decoder, i):
        super().__init__()
        self.layer = nn.ModuleList([LayerSelf(c, is_decoder, i == 0)] + ([LayerCross(c)] if is_decoder else []) + [LayerFF(c)])
        self.is_decoder = is_decoder

    def forward(self, x, bias, enc=None, enc_mask=None):
        x = self.layer[0](x, bias)
        if self.is_decoder:
            x = self.layer[1](x, enc, enc_mask)
        return self.layer[-1](x)


MIN = torch.finfo(torch.float32).min


class Stack(nn.Module):
    def __init__(self, c, is_decoder, embed):
        super().__init__()
        n = c["num_decoder_layers"] if is_decoder else c["num_layers"]
        self.block = nn.ModuleList([Block(c, is_decoder, i) for i in range(n)])
        self.final_layer_norm = RMSNorm(c["d_model"], c["layer_norm_epsilon"])
        self.is_decoder = is_decoder
        self.embed = [embed]

    def forward(self, ids, mask, enc=None, enc_mask=None):
        t = ids.shape[1]
        keep = mask[:, None, None, :].bool()
        if self.is_decoder:
            keep = keep & torch.tril(torch.ones(t, t, dtype=torch.bool))[None, None]
        add = torch.where(keep, 0.0, MIN).to(self.final_layer_norm.weight.dtype)
        bias = self.block[0].layer[0].SelfAttention.bias(t, t) + add
        x = self.embed[0](ids)
        for b in self.block:
            x = b(x, bias, enc, enc_mask)
        return self.final_layer_norm(x)


class T5(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.shared = nn.Embedding(c["vocab_size"], c["d_model"])
        self.encoder = Stack(c, False, self.shared)
        self.decoder = Stack(c, True, self.shared)
        if not c["tie_word_embeddings"]:
            self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, ids, mask, labels):
        start = torch.full_like(labels[:, :1], self.c["decoder_start_token_id"])
        dec = torch.cat([start, labels[:, :-1]], 1)
        dec = torch.where(dec == -100, torch.full_like(dec, self.c["pad_token_id"]), dec)
        enc = self.encoder(ids, mask)
        enc_mask = torch.where(mask[:, None, None, :].bool(), 0.0, MIN).to(enc.dtype)
        out = self.decoder(dec, torch.ones_like(dec), enc, enc_mask)
        if self.c["tie_word_embeddings"]:
            logits = (out * self.c["d_model"] ** -0.5) @ self.shared.weight.t()
        else:
            logits = self.lm_head(out)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return logits, loss, dec


BASE = {
    "model_type": "t5",
    "architectures": ["T5ForConditionalGeneration"],
    "vocab_size": 100,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 20,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

VARIANTS = {
    "t5": {"feed_forward_proj": "relu", "tie_word_embeddings": True},
    "t5-v1_1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
}


def tiny_tokenizer(vocab_size):
    """A Unigram tokenizer.json of vocab_size pieces in T5's layout (pad 0, eos 1, unk 2): "▁" and
    "▁"-prefixed letters, letters, digits and punctuation, scored by rank."""
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
    pieces = ["▁"] + ["▁" + c for c in chars[:26]] + list(chars)
    pieces = pieces[: vocab_size - 3]
    vocab = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]] + [[p, -1.0 - 0.05 * i] for i, p in enumerate(pieces)]
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True} for i, t in enumerate(["<pad>", "</s>", "<unk>"])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": False, "strip_right": True}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "▁"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": vocab, "byte_fallback": False},
    }


def main():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 17, 42, 9, 63, 21, 1, 0, 0], [8, 3, 77, 12, 55, 90, 31, 44, 1]])
    mask = (torch.arange(9)[None] < torch.tensor([[7], [9]])).long()
    labels = torch.tensor([[13, 7, 88, 2, 1, -100, -100], [40, 41, 6, 99, 23, 50, 1]])
    buckets = {}
    for (nb, md) in [(32, 128), (8, 20)]:
        rel = torch.arange(-300, 301)
        for bi in [True, False]:
            buckets[f"buckets.{nb}.{md}.{'bi' if bi else 'causal'}"] = bucket(rel, bi, nb, md).int()
    for tag, extra in VARIANTS.items():
        c = {**BASE, **extra}
        model = T5(c)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("layer_norm.weight"):
                    continue
                p.normal_(0, 0.3 if "relative_attention_bias" in name else 0.5 / math.sqrt(p.shape[-1]) * 3)
        folder = os.path.join(OUT, tag)
        os.makedirs(folder, exist_ok=True)
        state = {k: v for k, v in model.state_dict().items()}
        save(os.path.join(folder, "model.safetensors"), state, {"format": "pt"})
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump(tiny_tokenizer(c["vocab_size"]), f, ensure_ascii=False)
        m64 = T5(c).double()
        m64.load_state_dict({k: v.double() for k, v in state.items()})
        logits, loss, dec = m64(ids, mask, labels)
        loss.backward()
        out = {"input_ids": ids.int(), "attention_mask": mask.int(), "labels": labels.int(), "decoder_input_ids": dec.int(), "logits": logits.float(), "loss": loss.float()}
        for name, p in m64.named_parameters():
            out[f"grad.{name}"] = p.grad.float()
        out.update(buckets)
        save(os.path.join(folder, "reference.safetensors"), out)
        print(tag, "loss", loss.item(), "params", len(list(m64.named_parameters())))


if __name__ == "__main__":
    main()
