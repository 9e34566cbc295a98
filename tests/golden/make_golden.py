#!/usr/bin/env python3
"""Golden reference files for qkvlab, computed with PyTorch.

Run by hand (not by CI), from the repository root:

    /usr/bin/python3 tests/golden/make_golden.py

It writes tests/golden/data/<model>_<variant>.safetensors, which tests/golden/test_golden.cpp checks qkvlab against.

Everything below is written from scratch with plain torch.nn, independently of the C++ code, following
docs/DESIGN.md sections 4-6. It is meant to be read as the reference: if qkvlab and this file disagree, one of the
two is wrong, and the test says which tensor differs first.

Each file holds, for one tiny model and one attention variant, in float64:
  - every parameter under its qkvlab name (tok_emb.weight, blocks.0.attn.q.weight, ...),
  - "input" (int64 token ids, or float images), "target" (int64),
  - "logits" and "loss" (0-d; mean cross-entropy over every position, as qkvlab's model_loss),
  - "grad.<name>": d loss / d parameter, for every parameter,
and in __metadata__["config"] the model config as JSON, in the format of qkvlab checkpoints (docs/DESIGN.md section 6),
so that the C++ side builds the same model.

The weights are random and seeded, and deliberately NOT the training init: matrices N(0, 0.2), biases, LayerNorm
gains and biases and the (X)+ weights all nonzero, so that every parameter changes the loss.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")


# ---------------------------------------------------------------- attention (docs/DESIGN.md section 4)

def parse_variant(vid):
    """'kv-gqa:2' -> (projection scheme, kv_heads or 0 for 'as many as query heads', has (X)+ bias)."""
    plus = vid.endswith("+")
    base = vid[:-1] if plus else vid
    if base in ("qkv", "kv", "qk", "single"):
        return base, 0, plus
    if base == "mqa":
        return "qkv", 1, plus
    if base == "kv-mqa":
        return "kv", 1, plus
    if base.startswith("gqa:"):
        return "qkv", int(base[4:]), plus
    if base.startswith("kv-gqa:"):
        return "kv", int(base[7:]), plus
    raise ValueError(vid)


def sinusoid(pos, c, h):
    """Channel c of h: channel 2k = sin(pos f_k), 2k+1 = cos(pos f_k), f_k = 10000^(-2k/h)."""
    k = c // 2
    f = 10000.0 ** (-2.0 * k / h)
    return math.sin(pos * f) if c % 2 == 0 else math.cos(pos * f)


def positional_table(n, m):
    """The fixed P (n, n, m): channels [0, m/2) encode the query position i, [m/2, m) the key position j."""
    half = m // 2
    P = torch.zeros(n, n, m)
    for i in range(n):
        for j in range(n):
            for c in range(m):
                P[i, j, c] = sinusoid(i, c, half) if c < half else sinusoid(j, c - half, m - half)
    return P


class PositionalScoreBias(nn.Module):
    """The (X)+ bias, computed straight from the paper's formula: S'[i,j] = sum_c w_c (S[i,j] + P[i,j,c]) + b."""

    def __init__(self, n, m):
        super().__init__()
        self.weight = nn.Parameter(torch.full((m,), 1.0 / m))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("P", positional_table(n, m))

    def forward(self, S):  # S (B, H, T, T)
        T = S.shape[-1]
        P = self.P[:T, :T, :]                                        # (T, T, m)
        return (self.weight * (S.unsqueeze(-1) + P)).sum(-1) + self.bias


class Attention(nn.Module):
    """One layer for every variant: which of q, k, v exist is the only difference (docs/DESIGN.md section 4 table)."""

    def __init__(self, d, n_heads, variant, context, pe_channels, causal):
        super().__init__()
        scheme, kv_heads, plus = parse_variant(variant)
        self.scheme, self.H, self.D, self.causal = scheme, n_heads, d // n_heads, causal
        self.Hkv = kv_heads or n_heads
        kvd = self.Hkv * self.D
        if scheme in ("qkv", "kv"):
            self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, kvd)
        if scheme in ("qkv", "qk"):
            self.v = nn.Linear(d, kvd)
        self.o = nn.Linear(d, d)
        if plus:
            self.pe = PositionalScoreBias(context, pe_channels)

    def forward(self, x):  # (B, T, C)
        B, T, C = x.shape
        k = self.k(x)
        q = self.q(x) if self.scheme in ("qkv", "kv") else k          # qk, single: q = k
        v = self.v(x) if self.scheme in ("qkv", "qk") else k          # kv, single: v = k
        q = q.view(B, T, self.H, self.D).transpose(1, 2)              # (B, H, T, D)
        k = k.view(B, T, self.Hkv, self.D).transpose(1, 2)            # (B, Hkv, T, D)
        v = v.view(B, T, self.Hkv, self.D).transpose(1, 2)            # (B, Hkv, T, D)
        # GQA/MQA: query head h uses KV head h // (H / Hkv) (contiguous groups).
        k = k.repeat_interleave(self.H // self.Hkv, dim=1)            # (B, H, T, D)
        v = v.repeat_interleave(self.H // self.Hkv, dim=1)
        S = q @ k.transpose(-2, -1) / math.sqrt(self.D)               # (B, H, T, T)
        if hasattr(self, "pe"):
            S = self.pe(S)                                            # after scaling, before the mask
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)         # j > i is the future
            S = S.masked_fill(mask, float("-inf"))
        A = torch.softmax(S, dim=-1)
        y = (A @ v).transpose(1, 2).reshape(B, T, C)                  # merge heads
        return self.o(y)


# ---------------------------------------------------------------- models (docs/DESIGN.md section 5)

class MLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc = nn.Linear(d, hidden)
        self.proj = nn.Linear(hidden, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # exact (erf) GELU, torch's default


class Block(nn.Module):
    def __init__(self, cfg, causal):
        super().__init__()
        d = cfg["d_model"]
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, cfg["n_heads"], cfg["variant"], cfg["context"], cfg["pe_channels"], causal)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d, cfg["ffn"])

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.tok_emb = nn.Embedding(cfg["vocab_size"], d)
        self.pos_emb = nn.Embedding(cfg["context"], d)
        self.blocks = nn.ModuleList(Block(cfg, causal=True) for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids):  # (B, T) -> (B, T, V)
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.tok_emb.weight.T  # head tied to the token embedding


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.tok_emb = nn.Embedding(cfg["vocab_size"], d)
        self.pos_emb = nn.Embedding(cfg["context"], d)
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, cfg["n_classes"])

    def forward(self, ids):  # (B, T) -> (B, T, classes)
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["d_model"], cfg["patch"]
        self.p = p
        self.patch_emb = nn.Linear(p * p, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_emb = nn.Embedding(cfg["context"], d)
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, cfg["n_classes"])

    def forward(self, images):  # (B, 1, H, W) -> (B, classes)
        B, _, H, W = images.shape
        p = self.p
        # non-overlapping p x p patches in row-major order, each flattened row-major: (B, N, p*p)
        patches = images.reshape(B, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(B, -1, p * p)
        x = self.patch_emb(patches)                                        # (B, N, d)
        x = torch.cat([self.cls_token.expand(B, 1, -1), x], dim=1)         # (B, N+1, d)
        x = x + self.pos_emb(torch.arange(x.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x)[:, 0])                               # classify from CLS


# ---------------------------------------------------------------- fixed weights and data

def fill_weights(model, gen):
    """Random, seeded, everything nonzero and O(1) in effect (not the training init)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if ".pe." in name and leaf == "weight":        # (X)+ weights: around 1/m, all different
                p.copy_(0.1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif (".ln" in name or name.startswith("ln")) and leaf == "weight":  # LayerNorm gains
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name in ("tok_emb.weight", "pos_emb.weight", "cls_token"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:                                             # Linear matrices
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


# -------------------------------------------------------- safetensors, written by hand (docs/DESIGN.md section 6)

DTYPES = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("int64"): "I64"}


def save_safetensors(path, tensors, metadata):
    """8-byte little-endian header length, JSON header (padded with spaces to a multiple of 8), raw LE data."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors:
        a = t.detach().numpy().copy(order="C")  # keeps 0-d tensors 0-d (ascontiguousarray would not)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- the cases

D_MODEL, N_HEADS, N_LAYERS, BATCH = 12, 4, 2, 2   # head size 3: odd sizes, so no kernel gets a lucky fit
PE_CHANNELS = 10

GPT_VARIANTS = ["qkv", "kv", "qk", "single", "gqa:2", "mqa", "kv-gqa:2", "kv-mqa", "qk+", "single+"]
SMALL_SET = ["qkv", "kv", "qk+", "single+"]


def make_config(task, variant):
    scheme, kv_heads, plus = parse_variant(variant)
    cfg = {
        "task": task,
        "variant": variant,
        "d_model": D_MODEL,
        "n_layers": N_LAYERS,
        "n_heads": N_HEADS,
        "kv_heads": kv_heads or N_HEADS,
        "context": 8,
        "vocab_size": 10,
        "pe_channels": PE_CHANNELS if plus else 0,
        "ffn": 4 * D_MODEL,
        "n_classes": 10,
    }
    if task == "lm":
        cfg["vocab_size"] = 11
        cfg["vocab"] = [ord(c) for c in "abcdefghijk"]
    if task == "fmnist":
        cfg.update(context=17, vocab_size=0, patch=7, image=28)
    return cfg


def make_case(kind, variant, seed):
    task = {"gpt": "lm", "encoder": "reverse", "vit": "fmnist"}[kind]
    cfg = make_config(task, variant)
    model = {"gpt": GPT, "encoder": Encoder, "vit": ViT}[kind](cfg)
    gen = torch.Generator().manual_seed(seed)
    fill_weights(model, gen)

    T = cfg["context"]
    if kind == "gpt":
        x = torch.randint(0, cfg["vocab_size"], (BATCH, T), generator=gen)
        y = torch.randint(0, cfg["vocab_size"], (BATCH, T), generator=gen)
    elif kind == "encoder":
        x = torch.randint(0, cfg["vocab_size"], (BATCH, T), generator=gen)
        y = torch.randint(0, cfg["n_classes"], (BATCH, T), generator=gen)
    else:
        x = torch.rand(BATCH, 1, cfg["image"], cfg["image"], generator=gen)
        y = torch.randint(0, cfg["n_classes"], (BATCH,), generator=gen)

    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # mean over every position
    model.zero_grad()
    loss.backward()

    params = list(model.named_parameters())
    tensors = [(n, p) for n, p in params]
    tensors += [("input", x), ("target", y), ("logits", logits), ("loss", loss)]
    tensors += [("grad." + n, p.grad) for n, p in params]
    name = f"{kind}_{variant.replace(':', '').replace('+', '_plus')}.safetensors"
    meta = {"config": json.dumps(cfg), "generator": "tests/golden/make_golden.py, torch " + torch.__version__}
    save_safetensors(os.path.join(OUT, name), tensors, meta)
    return name, os.path.getsize(os.path.join(OUT, name)), loss.item()


def self_check():
    """The reference checks itself where PyTorch has its own implementation: our qkv Attention (causal or not)
    must equal nn.MultiheadAttention with the same weights, and GQA with Hkv = H must equal plain qkv."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 8, D_MODEL, generator=gen)
    for causal in (True, False):
        ours = Attention(D_MODEL, N_HEADS, "qkv", 8, 0, causal)
        fill_weights(ours, gen)
        mha = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
            mha.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
            mha.out_proj.weight.copy_(ours.o.weight)
            mha.out_proj.bias.copy_(ours.o.bias)
        mask = torch.ones(8, 8, dtype=torch.bool).triu(1) if causal else None
        want, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        assert torch.allclose(ours(x), want, rtol=1e-12, atol=1e-12), "Attention disagrees with nn.MultiheadAttention"
        full = Attention(D_MODEL, N_HEADS, f"gqa:{N_HEADS}", 8, 0, causal)
        full.load_state_dict(ours.state_dict())
        assert torch.allclose(full(x), ours(x), rtol=1e-12, atol=1e-12), "GQA with H KV heads is not QKV"
    P = positional_table(8, PE_CHANNELS)
    assert not torch.allclose(P, P.transpose(0, 1)), "P must not be symmetric"
    print("self-check: Attention == nn.MultiheadAttention (causal and not), gqa:H == qkv")


def main():
    self_check()
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(OUT, f))
    cases = [("gpt", v) for v in GPT_VARIANTS] + [("encoder", v) for v in SMALL_SET] + \
            [("vit", v) for v in SMALL_SET]
    total = 0
    for i, (kind, variant) in enumerate(cases):
        name, size, loss = make_case(kind, variant, seed=1000 + i)
        total += size
        print(f"{name:34s} {size:7d} bytes  loss {loss:.6f}")
    print(f"{len(cases)} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
