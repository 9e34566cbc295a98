#!/usr/bin/python3
"""bench/torch_synthetic.py: the PyTorch yardstick for one run of `make demo` (bench/run.sh, section "demo").

Issue 16 asks that one run at the demo's configuration take at most half the time of the authors' synthetic-task
code. Their code is not part of this project, so this script is an independent PyTorch implementation of the same
run, written from the recipe that docs/RESULTS.md ("Synthetic defaults") gives, to time beside `qkvlab study` on one
machine, one thread each:

  data    random digits 0-9, length --seq-len; 10,000 training and 2,000 test sequences; targets by --task
          (reverse, sort, sub = 9 - x, swap = second half then first, copy)
  model   one-hot digits through Linear(10, d) with bias, plus a learned position embedding (nn.Embedding, whose
          default init is N(0, 1)); --layers pre-LN blocks x += attn(ln1(x)); x += mlp(ln2(x)), non-causal, --heads
          heads with separate q, k, v and output Linear(d, d) (bias on each), MLP d -> 4d -> d with exact GELU,
          LayerNorm eps 1e-5, final LayerNorm, Linear(d, 10) head; every module with PyTorch's default init
  recipe  Adam lr 1e-3 (no weight decay), batch 128, --epochs over the training set with its last partial batch
          (158 steps for 2 epochs), 5 % linear warm-up then cosine to 0, gradient clipping at norm 5,
          cross-entropy over every position
  eval    loss and token accuracy over the 2,000 test sequences, in batches of 128, no grad

It prints one line: `seconds S steps N ms_per_step M accuracy A`, where S is the wall time from the data's
generation to the end of the evaluation (the interpreter's start and `import torch` are not counted; qkvlab's
figure in the same table is its whole process, start to exit, with the checkpoint and the charts it writes).

  /usr/bin/python3 bench/torch_synthetic.py --threads 1
"""
import argparse
import math
import os
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="reverse", choices=["reverse", "sort", "sub", "swap", "copy"])
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.d_model % a.heads:
        sys.exit(f"torch_synthetic.py: --d-model {a.d_model} is not a multiple of --heads {a.heads}")
    if a.task == "swap" and a.seq_len % 2:
        sys.exit(f"torch_synthetic.py: swap needs an even --seq-len, got {a.seq_len}")

    # Debian's torch hands matrix products to OpenBLAS, whose pool ignores torch.set_num_threads(): set both first.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    vocab, batch, T, d, H = 10, 128, a.seq_len, a.d_model, a.heads

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            B = x.shape[0]
            h = self.ln1(x)
            split = lambda t: t.view(B, T, H, d // H).transpose(1, 2)  # (B, H, T, d/H)
            q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
            att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // H), dim=-1)  # non-causal
            x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, d))
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.pos = nn.Linear(vocab, d), nn.Embedding(T, d)
            self.blocks = nn.ModuleList(Block() for _ in range(a.layers))
            self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

        def forward(self, x):
            h = self.inp(F.one_hot(x, vocab).float()) + self.pos.weight
            for b in self.blocks:
                h = b(h)
            return self.head(self.ln_f(h))

    def target(x):
        if a.task == "reverse":
            return x.flip(1)
        if a.task == "sort":
            return x.sort(1).values
        if a.task == "sub":
            return 9 - x
        if a.task == "swap":
            return torch.cat([x[:, T // 2:], x[:, :T // 2]], 1)
        return x.clone()

    start = time.perf_counter()
    g = torch.Generator().manual_seed(a.seed)
    xtr = torch.randint(0, vocab, (10000, T), generator=g)
    xte = torch.randint(0, vocab, (2000, T), generator=g)
    ytr, yte = target(xtr), target(xte)

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    per_epoch = math.ceil(len(xtr) / batch)
    steps = per_epoch * a.epochs
    warmup = int(0.05 * steps)

    def lr_factor(s):  # s counts the steps taken so far
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    model.train()
    for _ in range(a.epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            logits = model(xtr[idx])
            loss = F.cross_entropy(logits.reshape(-1, vocab), ytr[idx].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
    trained = time.perf_counter()

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xte), batch):
            correct += (model(xte[i:i + batch]).argmax(-1) == yte[i:i + batch]).sum().item()
    end = time.perf_counter()
    print(f"seconds {end - start:.3f} steps {steps} ms_per_step {1000 * (trained - start) / steps:.2f} "
          f"accuracy {correct / yte.numel():.4f}")


if __name__ == "__main__":
    main()
