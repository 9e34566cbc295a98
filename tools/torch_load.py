#!/usr/bin/python3
"""From qkvlab to PyTorch: load a qkvlab GPT checkpoint into an equivalent torch.nn.Module.

    /usr/bin/python3 tools/torch_load.py runs/lm-kv                       # load, print the model
    /usr/bin/python3 tools/torch_load.py runs/lm-kv --prompt "ROMEO:"     # and continue a text greedily
    /usr/bin/python3 tools/torch_load.py RUN --check LOGITS.safetensors   # compare with logits qkvlab computed

Every attention variant of the paper works: QKV, Q-K=V (kv), Q=K-V (qk), Q=K=V (single), their (X)+ forms with the
2D positional score bias, and GQA/MQA (gqa:G, mqa, kv-gqa:G, kv-mqa). The checkpoint format is docs/DESIGN.md section 6:
a safetensors file whose __metadata__["config"] is the model config as JSON; tensor names are the module names
below, so `model.load_state_dict` takes the file as it is.

--check FILE reads "input" (int64 ids, (B,T)) and "logits" ((B,T,V)) from FILE, runs the PyTorch model on the
input and fails (exit 1) unless the logits agree within --tolerance. Give one --check per checkpoint, in order.
Errors are one line on stderr and exit status 2.

To continue training in PyTorch, import this file (see the README, "From qkvlab to PyTorch"):

    from torch_load import load_gpt, save_gpt
    model, config = load_gpt("runs/lm-kv")         # a torch.nn.Module in float32, train mode off
    ...                                            # any PyTorch training loop
    save_gpt(model, config, "runs/lm-kv-torch/model.safetensors")   # qkvlab generate/eval read it back

Needs only torch (Debian: python3-torch).
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors (docs/DESIGN.md section 6)

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
_SIZES = {"F32": 4, "F64": 8, "I64": 8}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """-> (dict name -> tensor, metadata dict). Only the dtypes qkvlab writes: F32, F64, I64."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (only {len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header of {n} bytes runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    data = bytearray(raw[8 + n:])  # writable, so torch.frombuffer does not warn
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; expected F32, F64 or I64")
        begin, end = info["data_offsets"]
        count = (end - begin) // _SIZES[info["dtype"]]
        if count == 0:
            tensors[name] = torch.zeros(info["shape"], dtype=_DTYPES[info["dtype"]])
            continue
        t = torch.frombuffer(data, dtype=_DTYPES[info["dtype"]], count=count, offset=begin)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    """Writes tensors (name -> tensor) in the order given, atomically (temporary file, rename)."""
    header, blobs, at = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- the model (docs/DESIGN.md sections 4 and 5)

def projection_scheme(variant):
    """'kv-gqa:4+' -> 'kv': which of q, k, v the variant projects (head counts come from the config)."""
    base = variant.rstrip("+")
    if base in ("qkv", "kv", "qk", "single"):
        return base
    if base == "mqa" or base.startswith("gqa:"):
        return "qkv"
    if base == "kv-mqa" or base.startswith("kv-gqa:"):
        return "kv"
    raise ValueError(f"unknown variant '{variant}'")


def sinusoids(n, h):
    """(n, h): channel 2k = sin(pos f_k), 2k+1 = cos(pos f_k), f_k = 10000^(-2k/h), for positions 0..n-1."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    k = torch.div(torch.arange(h), 2, rounding_mode="floor").to(torch.float64)
    angle = pos * 10000.0 ** (-2.0 * k / h)
    return torch.where(torch.arange(h) % 2 == 0, torch.sin(angle), torch.cos(angle))


class PositionalScoreBias(nn.Module):
    """(X)+: S'[i,j] = sum_c w_c (S[i,j] + P[i,j,c]) + b. The first m/2 channels of P depend on the query position
    i only, the rest on the key position j, so P[i,j,:] @ w = a(i) + c(j)."""

    def __init__(self, context, m):
        super().__init__()
        self.weight = nn.Parameter(torch.full((m,), 1.0 / m))
        self.bias = nn.Parameter(torch.zeros(1))
        self.half = m // 2
        self.register_buffer("pq", sinusoids(context, m // 2).float(), persistent=False)      # (n, m/2)
        self.register_buffer("pk", sinusoids(context, m - m // 2).float(), persistent=False)  # (n, m - m/2)

    def forward(self, s):  # s (B, H, T, T), scaled scores
        T = s.shape[-1]
        a = self.pq[:T] @ self.weight[: self.half]     # (T,) query-position term
        c = self.pk[:T] @ self.weight[self.half:]      # (T,) key-position term
        return s * self.weight.sum() + a[:, None] + c[None, :] + self.bias


class Attention(nn.Module):
    """One class for all variants: `scheme` says which projections exist; q = k for qk/single, v = k for kv/single."""

    def __init__(self, d, heads, kv_heads, scheme, context, pe_channels):
        super().__init__()
        self.scheme, self.h, self.hkv, self.dh = scheme, heads, kv_heads, d // heads
        kv_dim = kv_heads * self.dh
        if scheme in ("qkv", "kv"):
            self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, kv_dim if scheme in ("qkv", "kv") else d)
        if scheme in ("qkv", "qk"):
            self.v = nn.Linear(d, kv_dim if scheme == "qkv" else d)
        self.o = nn.Linear(d, d)
        self.pe = PositionalScoreBias(context, pe_channels) if pe_channels > 0 else None

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        k = self.k(x)
        q = self.q(x) if hasattr(self, "q") else k
        v = self.v(x) if hasattr(self, "v") else k
        q = q.view(B, T, self.h, self.dh).transpose(1, 2)        # (B, H, T, D)
        k = k.view(B, T, self.hkv, self.dh).transpose(1, 2)      # (B, Hkv, T, D)
        v = v.view(B, T, self.hkv, self.dh).transpose(1, 2)
        group = self.h // self.hkv                               # query head h uses KV head h // group
        k = k.repeat_interleave(group, dim=1)                    # (B, H, T, D)
        v = v.repeat_interleave(group, dim=1)
        s = q @ k.transpose(-2, -1) / math.sqrt(self.dh)         # (B, H, T, T)
        if self.pe is not None:
            s = self.pe(s)                                       # after scaling, before the mask
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, T, C)             # (B, T, H*D)
        return self.o(y)


class MLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc, self.proj = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        kv = cfg.get("kv_heads") or cfg["n_heads"]
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, cfg["n_heads"], kv, projection_scheme(cfg["variant"]), cfg["context"],
                              cfg.get("pe_channels", 0))
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = MLP(d, cfg.get("ffn") or 4 * d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))  # pre-LN
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """qkvlab's GPT: token + learned position embeddings, pre-LN blocks, final LayerNorm, head tied to tok_emb."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        d = cfg["d_model"]
        self.tok_emb = nn.Embedding(cfg["vocab_size"], d)
        self.pos_emb = nn.Embedding(cfg["context"], d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layers"]))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids):  # (B, T) int64 -> (B, T, V) logits
        T = ids.shape[1]
        if T > self.config["context"]:
            raise ValueError(f"{T} positions exceed the model's context of {self.config['context']}")
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok_emb.weight.T

    def loss(self, ids, targets):  # mean cross-entropy over every position, as qkvlab's training loss
        logits = self(ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def model_path(ckpt):
    path = os.path.join(ckpt, "model.safetensors") if os.path.isdir(ckpt) else ckpt
    if not os.path.exists(path):
        raise ValueError(f"no checkpoint at {path}")
    return path


def load_gpt(ckpt):
    """A run directory or model.safetensors -> (GPT in float32, eval mode; its config dict)."""
    path = model_path(ckpt)
    tensors, meta = read_safetensors(path)
    if "config" not in meta:
        raise ValueError(f"{path} has no __metadata__ config; is it a qkvlab checkpoint?")
    cfg = json.loads(meta["config"])
    if cfg.get("task") != "lm":
        raise ValueError(f"{path} is a '{cfg.get('task')}' model; this tool loads GPT (task lm) checkpoints")
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match a {cfg['variant']} GPT: missing {missing}, unexpected {unexpected}")
    return model.eval(), cfg


def read_corpus(path):
    """The bytes qkvlab trained on: a file, or a folder's regular files in sorted name order without links and
    fortune's .dat index files, each ending in a newline (as qkvlab's read_corpus; config key "data")."""
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            return f.read()
    out = b""
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or name.endswith(".dat") or os.path.islink(full) or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            out += f.read()
        if out and not out.endswith(b"\n"):
            out += b"\n"
    return out


def save_gpt(model, cfg, path):
    """Writes the model as a qkvlab checkpoint (float32, config in __metadata__) that qkvlab loads."""
    write_safetensors(path, dict(model.state_dict()), {"config": json.dumps(cfg)})


# ---------------------------------------------------------------- command line

def check_logits(model, ref_path, tolerance):
    """Max |torch - qkvlab| over the logits of ref_path's input, and whether it is within tolerance."""
    ref, _ = read_safetensors(ref_path)
    for name in ("input", "logits"):
        if name not in ref:
            raise ValueError(f"{ref_path} has no tensor '{name}' (it needs 'input' ids and qkvlab's 'logits')")
    with torch.no_grad():
        got = model(ref["input"].long())
    want = ref["logits"].float()
    if got.shape != want.shape:
        raise ValueError(f"{ref_path}: logits of shape {tuple(want.shape)}, but the model gives {tuple(got.shape)}")
    err = (got - want).abs().max().item()
    return err, err <= tolerance * max(1.0, want.abs().max().item())


def main():
    ap = argparse.ArgumentParser(description="Load qkvlab GPT checkpoints into PyTorch and check their logits.")
    ap.add_argument("ckpt", nargs="+", help="run directory or model.safetensors")
    ap.add_argument("--check", action="append", default=[],
                    help="safetensors file with 'input' and qkvlab's 'logits' (one per checkpoint, in order)")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max |difference| relative to max |logit|")
    ap.add_argument("--prompt", help="a text to continue greedily with the loaded model")
    ap.add_argument("--tokens", type=int, default=40, help="bytes to generate after --prompt")
    args = ap.parse_intermixed_args()  # "RUN1 --check REF1 RUN2 --check REF2" pairs them up
    if args.check and len(args.check) != len(args.ckpt):
        raise ValueError(f"{len(args.check)} --check files for {len(args.ckpt)} checkpoints; give one per checkpoint")
    failed = 0
    for i, ckpt in enumerate(args.ckpt):
        model, cfg = load_gpt(ckpt)
        n = sum(p.numel() for p in model.parameters())
        line = f"{ckpt}: {cfg['variant']} ({cfg.get('paper_name', '')}) GPT, {n:,} parameters"
        if args.check:
            err, ok = check_logits(model, args.check[i], args.tolerance)
            line += f"; logits vs qkvlab: max abs diff {err:.2e} -> {'ok' if ok else 'MISMATCH'}"
            failed += not ok
        print(line)
        if args.prompt is not None:
            print(continue_text(model, cfg, args.prompt, args.tokens))
    if failed:
        print(f"torch_load: {failed} of {len(args.ckpt)} checkpoints disagree with qkvlab", file=sys.stderr)
        return 1
    return 0


def continue_text(model, cfg, prompt, tokens):
    """Greedy decoding over the checkpoint's byte vocabulary (cfg['vocab'][id] is the byte of token id)."""
    vocab = cfg["vocab"]
    index = {b: i for i, b in enumerate(vocab)}
    unknown = sorted({b for b in prompt.encode() if b not in index})
    if unknown:
        raise ValueError(f"--prompt has bytes the model never saw: {unknown}")
    ids = [index[b] for b in prompt.encode()]
    with torch.no_grad():
        for _ in range(tokens):
            window = torch.tensor([ids[-cfg["context"]:]])
            ids.append(int(model(window)[0, -1].argmax()))
    return bytes(vocab[i] for i in ids).decode(errors="replace")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"torch_load: error: {e}", file=sys.stderr)
        sys.exit(2)
