#!/usr/bin/python3
"""bench/torch_gpt.py: the PyTorch yardstick of `qkvlab bench train` (bench/run.sh, `make bench`).

It trains the same GPT as qkvlab (models/transformer.h) in PyTorch on the CPU, float32, and reports the step times,
so that `qkvlab bench train --torch "/usr/bin/python3 bench/torch_gpt.py"` can print ours / PyTorch.

  /usr/bin/python3 bench/torch_gpt.py --configs tiny --variants qkv --threads 1 --steps 10
  /usr/bin/python3 bench/torch_gpt.py --configs small --variants kv --threads 2 --json out.json

Run it with Debian's /usr/bin/python3, the interpreter that sees python3-torch.

The work (as qkvlab's bench train, bench/train.cpp):
  presets (docs/DESIGN.md section 5): tiny = context 64, d 64, 4 heads, 2 layers; small = context 128, d 128,
  4 heads, 4 layers; batch 32, vocabulary 65. A pre-LN GPT: token + learned position embedding, blocks
  x += attn(ln1(x)); x += mlp(ln2(x)), MLP d -> 4d -> d with exact GELU, final LayerNorm (eps 1e-5), the output
  head tied to the token embedding, a bias on every Linear, causal attention with scale 1/sqrt(d / heads).
  Variants: qkv (q, k, v), kv (q, k; v = k), qk (k, v; q = k), single (k; q = v = k).
  Four fixed batches of uniform random tokens; AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on
  the matrices only (as qkvlab's make_param_groups); each step: zero_grad, forward, cross-entropy over every
  position, backward, step. Timed steps follow --warmup untimed ones.

Threads: --threads N runs with N PyTorch (OpenMP) threads AND N OpenBLAS threads. Debian's torch hands matrix
products to the system OpenBLAS, whose own thread pool does not follow torch.set_num_threads(), so the
environment is set before torch is imported: each measurement runs in a fresh child process (which also makes
its peak RSS its own). With N > 1 the OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE): spinning OpenMP
threads and OpenBLAS threads on the same cores slow each other down badly.

Output: one line per measurement on stdout; with --json FILE, the last measurement as one JSON object:
  {"config", "variant", "threads", "tokens" (batch x context), "n_params", "train_s" (seconds of each timed
   step), "loss_first", "loss_last", "peak_rss_kb"}.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

PRESETS = {  # context, d_model, heads, layers
    "tiny": (64, 64, 4, 2),
    "small": (128, 128, 4, 4),
}
VARIANTS = ("qkv", "kv", "qk", "single")
# The names an older yardstick used, accepted too.
ALIASES = {"kv_shared": "kv", "qk_shared": "qk"}
VOCAB = 65
BATCH = 32


def measure(config, variant, threads, steps, warmup, seed):
    """One measurement in this process (the child): returns the result dict."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(seed)
    context, d, heads, layers = PRESETS[config]
    hd = d // heads

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            # The projections the variant has; the others are the same tensor.
            names = {"qkv": ("q", "k", "v"), "kv": ("q", "k"), "qk": ("k", "v"), "single": ("k",)}[variant]
            self.proj = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
            self.o = nn.Linear(d, d)

        def forward(self, x):
            B, T, _ = x.shape
            k = self.proj["k"](x)
            q = self.proj["q"](x) if "q" in self.proj else k
            v = self.proj["v"](x) if "v" in self.proj else k
            q, k, v = (t.view(B, T, heads, hd).transpose(1, 2) for t in (q, k, v))  # (B,T,C) -> (B,H,T,D)
            s = q @ k.transpose(-2, -1) / hd ** 0.5                                    # (B,H,T,T)
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            p = s.masked_fill(mask, float("-inf")).softmax(-1)
            y = (p @ v).transpose(1, 2).reshape(B, T, d)                               # (B,H,T,D) -> (B,T,C)
            return self.o(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
            self.attn = Attention()
            self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb = nn.Embedding(VOCAB, d)
            self.pos_emb = nn.Embedding(context, d)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(d, eps=1e-5)
            for name, p in self.named_parameters():  # qkvlab's GPT init: N(0, 0.02) weights, zero biases
                if p.dim() == 2:
                    nn.init.normal_(p, 0.0, 0.02)
                elif name.endswith(".bias"):
                    nn.init.zeros_(p)

        def forward(self, idx):
            T = idx.shape[1]
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(T))
            for b in self.blocks:
                x = b(x)
            return self.ln_f(x) @ self.tok_emb.weight.t()  # tied output head: (B,T,C) -> (B,T,V)

    model = GPT()
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(42)
    batches = []
    for _ in range(4):
        seq = torch.randint(0, VOCAB, (BATCH, context + 1), generator=g)
        batches.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    import time
    model.train()
    times, losses = [], []
    for i in range(warmup + steps):
        x, y = batches[i % 4]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).view(-1, VOCAB), y.view(-1))
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if i >= warmup:
            times.append(dt)
    return {"config": config, "variant": variant, "threads": threads, "tokens": BATCH * context,
            "n_params": sum(p.numel() for p in model.parameters()), "train_s": times,
            "loss_first": losses[0], "loss_last": losses[-1],
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="tiny,small", help="comma list of presets: tiny, small")
    ap.add_argument("--variants", default="qkv,kv,single", help="comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--threads", default="1", help="comma list of thread counts")
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: tiny 30, small 8)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", help="write the last measurement to this file as one JSON object")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    configs = a.configs.split(",")
    variants = [ALIASES.get(v, v) for v in a.variants.split(",")]
    for c in configs:
        if c not in PRESETS:
            sys.exit(f"torch_gpt.py: unknown config '{c}' (known: {', '.join(PRESETS)})")
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"torch_gpt.py: unknown variant '{v}' (known: {', '.join(VARIANTS)})")
    try:
        threads = [int(t) for t in a.threads.split(",")]
        assert all(t >= 1 for t in threads)
    except (ValueError, AssertionError):
        sys.exit(f"torch_gpt.py: --threads must be a comma list of positive integers, got '{a.threads}'")
    if a.repeats < 1 or a.steps < 0 or a.warmup < 0:
        sys.exit("torch_gpt.py: --repeats must be >= 1, --steps and --warmup >= 0")

    if a.worker:  # the child: exactly one measurement, printed as RESULT <json>
        steps = a.steps or (30 if configs[0] == "tiny" else 8)
        r = measure(configs[0], variants[0], threads[0], steps, a.warmup, a.seed)
        print("RESULT " + json.dumps(r), flush=True)
        return

    last = None
    for c in configs:
        for v in variants:
            for t in threads:
                for _ in range(a.repeats):
                    env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t),
                               OPENBLAS_NUM_THREADS=str(t))
                    if t > 1:
                        env["OMP_WAIT_POLICY"] = "PASSIVE"
                    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--configs", c, "--variants", v,
                           "--threads", str(t), "--steps", str(a.steps), "--warmup", str(a.warmup),
                           "--seed", str(a.seed)]
                    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
                    if p.returncode != 0 or not lines:
                        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
                        sys.exit(f"torch_gpt.py: the measurement {c}/{v}/{t} threads failed: {err}")
                    last = json.loads(lines[-1][7:])
                    med = statistics.median(last["train_s"])
                    print(f"{c} {v} threads {t}: {last['tokens'] / med:,.0f} tokens/s (median of "
                          f"{len(last['train_s'])} steps), {last['n_params']:,} parameters, peak RSS "
                          f"{last['peak_rss_kb'] / 1024:.0f} MB, loss {last['loss_first']:.3f} -> "
                          f"{last['loss_last']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(last, f)


if __name__ == "__main__":
    main()
