"""PyTorch references of the causal LMs for packages/models/test/causal-lm.test.ts and
generate.test.ts. transformers is not installable here, so LlamaForCausalLM and
Llama is written out with transformers' module names and math (RMS norm, rotary embeddings
with rotate_half, SwiGLU, grouped-query attention); GPT2LMHeadModel is the GPT-2 of
packages/models/fixtures/make_text_fixtures.py with the head tied to wte. Each model is saved as `save_pretrained` writes it
(config.json, model.safetensors without the tied head's key, and a tokenizer.json: the tiny
byte-level BPE of ../packages/models/fixtures/hub_text/gpt2-lm) under
packages/models/test/fixtures/causal_lm/<name>/, and reference.safetensors holds per model:
a right-padded batch (`<name>.input_ids`, `.attention_mask`), its logits, the shifted
next-token cross-entropy (labels -100 on padding) and every parameter's gradient of it
(`<name>.grad.<key>`), then greedy and beam-search continuations of left-padded prompts as
transformers' generate() makes them (position ids from the mask's cumulative sum; beam search
with the length penalty over the generated tokens, the stop token included, as the
vectorised beam search of transformers 4.4x; early_stopping False). Run with /usr/bin/python3 (torch
1.13) from the repository root."""
import json
import math
import os
import shutil
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
from safetensors_write import save  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packages", "models", "fixtures"))
from make_text_fixtures import GPT2Model  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "packages", "models", "test", "fixtures", "causal_lm")
TOKENIZER = os.path.join(ROOT, "packages", "models", "fixtures", "hub_text", "gpt2-lm", "tokenizer.json")
MIN = torch.finfo(torch.float32).min
VOCAB = 420


def additive_mask(mask, t_q, past):
    """[B, Tk] keep flags -> [B, 1, Tq, Tk] additive: causal over positions past.., padded keys dropped."""
    tk = mask.shape[1]
    q = torch.arange(t_q)[:, None] + past
    k = torch.arange(tk)[None, :]
    ok = (k <= q)[None, None] & (mask[:, None, None, :] != 0)
    return torch.where(ok, torch.tensor(0.0), torch.tensor(MIN))


# Llama ---------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def rotary(pos, d, theta):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    f = pos[..., None].float() * inv
    emb = torch.cat((f, f), -1)
    return emb.cos(), emb.sin()


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, self.h, self.kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.d = e // self.h
        self.q_proj = nn.Linear(e, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(e, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(e, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, e, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.h // self.kv
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d) + mask, -1)
        return self.o_proj((a @ v).transpose(1, 2).reshape(b, t, -1))


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(e, f, bias=False)
        self.up_proj = nn.Linear(e, f, bias=False)
        self.down_proj = nn.Linear(f, e, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([LlamaLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = LlamaModel(c)
        self.tied = c["tie_word_embeddings"]
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, ids, pos, mask):
        c = self.c
        cos, sin = rotary(pos, c["hidden_size"] // c["num_attention_heads"], c["rope_theta"])
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t() if self.tied else self.lm_head(x)


# GPT-2 ---------------------------------------------------------------------------------


class GPT2LMHeadModel(nn.Module):
    """make_text_fixtures.py's GPT-2 (causal inside each block) at given position ids, the head tied to wte."""

    def __init__(self, c):
        super().__init__()
        self.transformer = GPT2Model(c)

    def forward(self, ids, pos, mask):
        t = self.transformer
        x = t.drop(t.wte(ids) + t.wpe(pos))
        for block in t.h:
            x = block(x, mask)
        return t.ln_f(x) @ t.wte.weight.t()


# Decoding as transformers' generate() ----------------------------------------------------


def next_logits(model, seqs, keep):
    pos = (keep.cumsum(-1) - 1).clamp(min=0)
    return model(seqs, pos, additive_mask(keep, seqs.shape[1], 0))[:, -1]


def greedy(model, ids, keep, max_new, eos):
    seqs, keep = ids.clone(), keep.clone()
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    out = []
    for _ in range(max_new):
        tok = next_logits(model, seqs, keep).argmax(-1)
        tok = torch.where(done, torch.tensor(eos), tok)
        out.append(tok)
        done |= tok == eos
        seqs = torch.cat([seqs, tok[:, None]], 1)
        keep = torch.cat([keep, torch.ones_like(keep[:, :1])], 1)
        if done.all():
            break
    return torch.stack(out, 1)


def beam_search(model, ids, keep, max_new, eos, nb, length_penalty):
    """One prompt (ids [1, S]): transformers' BeamSearchScorer with early_stopping False."""
    seqs = ids.repeat(nb, 1)
    keep = keep.repeat(nb, 1)
    prompt_len = ids.shape[1]
    scores = torch.full((nb,), -1e9)
    scores[0] = 0
    hyps = []

    def add(tokens, s, gen_len):
        score = s / (gen_len ** length_penalty)
        hyps.append((score, tokens))
        hyps.sort(key=lambda h: -h[0])
        del hyps[nb:]

    for step in range(max_new):
        cur_len = seqs.shape[1]
        logp = torch.log_softmax(next_logits(model, seqs, keep), -1) + scores[:, None]
        top, idx = logp.reshape(-1).topk(2 * nb)
        beams = []
        for rank, (s, i) in enumerate(zip(top.tolist(), idx.tolist())):
            b, tok = divmod(i, VOCAB)
            if tok == eos:
                if rank >= nb:
                    continue
                add(seqs[b, prompt_len:].tolist() + [eos], s, cur_len + 1 - prompt_len)
            else:
                beams.append((s, b, tok))
            if len(beams) == nb:
                break
        if len(hyps) >= nb:
            best = top.max().item() / ((cur_len + 1 - prompt_len) ** length_penalty)
            if hyps[-1][0] >= best:
                break
        order = torch.tensor([b for _, b, _ in beams])
        seqs = torch.cat([seqs[order], torch.tensor([t for _, _, t in beams])[:, None]], 1)
        keep = torch.cat([keep[order], torch.ones(nb, 1, dtype=keep.dtype)], 1)
        scores = torch.tensor([s for s, _, _ in beams])
    else:
        for b in range(nb):
            add(seqs[b, prompt_len:].tolist(), scores[b].item(), seqs.shape[1] - prompt_len)
    return hyps[0]


# Fixtures ------------------------------------------------------------------------------


def write_folder(name, config, model):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(TOKENIZER, os.path.join(d, "tokenizer.json"))
    save(os.path.join(d, "model.safetensors"), dict(model.state_dict()), {"format": "pt"})


def randomize(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("layernorm.weight") or n.endswith("norm.weight") or n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]) * (1.0 if n.endswith("embed_tokens.weight") or n.endswith("wte.weight") else 1.5))


def reference(name, model, ref, eos):
    ids = torch.randint(1, VOCAB, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    mask[1, 5:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    logits = model(ids, torch.arange(7)[None].expand(2, 7), additive_mask(mask, 7, 0))
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100)
    loss.backward()
    ref[f"{name}.input_ids"] = ids.int()
    ref[f"{name}.attention_mask"] = mask.int()
    ref[f"{name}.logits"] = logits.detach()
    ref[f"{name}.loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        ref[f"{name}.grad.{k}"] = p.grad
    with torch.no_grad():
        # Left-padded prompts of 5 and 3 tokens.
        prompts = torch.randint(1, VOCAB, (2, 5))
        keep = torch.ones(2, 5, dtype=torch.int64)
        keep[1, :2] = 0
        prompts[1, :2] = eos
        ref[f"{name}.prompt_ids"] = prompts.int()
        ref[f"{name}.prompt_mask"] = keep.int()
        ref[f"{name}.greedy"] = greedy(model, prompts, keep, 8, eos).int()
        for lp in (1.0, 2.0):
            score, tokens = beam_search(model, prompts[:1], keep[:1], 6, eos, 3, lp)
            ref[f"{name}.beam_lp{int(lp)}"] = torch.tensor(tokens, dtype=torch.int32)
            ref[f"{name}.beam_lp{int(lp)}_score"] = torch.tensor([score])
            # Again with a token the beams reach as the stop token, so that hypotheses finish early.
            stop = tokens[2]
            score, tokens = beam_search(model, prompts[:1], keep[:1], 6, stop, 3, lp)
            ref[f"{name}.beam_stop_lp{int(lp)}"] = torch.tensor([stop] + tokens, dtype=torch.int32)
            ref[f"{name}.beam_stop_lp{int(lp)}_score"] = torch.tensor([score])


def main():
    torch.manual_seed(0)
    ref = {}
    for name, tied in (("llama", False), ("llama-tied", True)):
        config = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "rope_scaling": None, "tie_word_embeddings": tied, "bos_token_id": 0, "eos_token_id": 0,
            "attention_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
        }
        model = LlamaForCausalLM(config)
        randomize(model)
        write_folder(name, config, model)
        reference(name, model, ref, 0)
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB, "n_embd": 32, "n_layer": 2,
        "n_head": 4, "n_inner": None, "n_positions": 64, "n_ctx": 64, "activation_function": "gelu_new",
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "bos_token_id": 0, "eos_token_id": 0,
    }
    model = GPT2LMHeadModel(config)
    randomize(model)
    model.eval()
    write_folder("gpt2-lm", config, model)
    reference("gpt2-lm", model, ref, 0)
    save(os.path.join(OUT, "reference.safetensors"), ref)


if __name__ == "__main__":
    main()
