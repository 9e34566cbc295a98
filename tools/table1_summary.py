#!/usr/bin/env python3
"""Summarises tools/table1_sweep.sh: token accuracy per variant and task, averaged over the finished cells of the
sweep (d_model x heads x length, each the mean of its seeds), beside the paper's Table 1 averages; then one table per
length, one table per task with a row per cell, and the cells still missing.

    tools/table1_summary.py [OUT]      (default runs/table1)
"""
import json
import os
import sys

TASKS = ["reverse", "sort", "sub", "swap", "copy"]
DIMS, HEADS, LENGTHS = [32, 64], [2, 4], [16, 64]
# The paper's Table 1: each task averaged over its sweep (lengths 16, 64, 128; several widths, depths and heads).
PAPER = {
    "qkv": [0.698, 0.971, 1.0, 0.588, 1.0],
    "qk": [0.705, 0.967, 1.0, 0.597, 1.0],
    "qk+": [0.718, 0.963, 1.0, 0.671, 1.0],
    "kv": [0.701, 0.958, 1.0, 0.590, 1.0],
    "single": [0.514, 0.939, 1.0, 0.446, 1.0],
    "single+": [0.581, 0.957, 1.0, 0.576, 1.0],
}


def cells(out):
    """{(T, d, h, task): results.json} for every finished cell."""
    found = {}
    for T in LENGTHS:
        for d in DIMS:
            for h in HEADS:
                for task in TASKS:
                    path = os.path.join(out, f"T{T}_d{d}_h{h}", task, "results.json")
                    if os.path.exists(path):
                        with open(path) as f:
                            found[(T, d, h, task)] = json.load(f)
    return found


def table(found, keep, title):
    """Markdown: variant x task, mean over the cells `keep` accepts, with how many cells each number averages."""
    acc = {}  # (variant, task) -> list of cell means
    names = {}
    for (T, d, h, task), res in found.items():
        if not keep(T, d, h):
            continue
        for v in res["variants"]:
            acc.setdefault((v["variant"], task), []).append(v["metric_mean"])
            names[v["variant"]] = v["paper_name"]
    lines = [f"{title}", "", "| variant | paper name | " + " | ".join(t.upper() for t in TASKS) +
             " | mean | paper (" + "/".join(t.upper() for t in TASKS) + ") | paper mean |",
             "|---|---|" + "---|" * (len(TASKS) + 3)]
    for var in PAPER:
        if var not in names:
            continue
        row, vals = [], []
        for t in TASKS:
            xs = acc.get((var, t), [])
            if xs:
                m = sum(xs) / len(xs)
                vals.append(m)
                row.append(f"{m:.3f} ({len(xs)})")
            else:
                row.append("-")
        mean = f"{sum(vals) / len(vals):.3f}" if len(vals) == len(TASKS) else "-"
        paper = PAPER[var]
        lines.append(f"| {var} | {names[var]} | " + " | ".join(row) + f" | {mean} | " +
                     "/".join(f"{p:g}" for p in paper) + f" | {sum(paper) / len(paper):.3f} |")
    return "\n".join(lines)


def by_cell(found, task):
    """Markdown: one row per finished cell of `task` (length, d_model, heads), the six variants' accuracy, each the
    mean ± standard deviation over the seeds (results.json's metric_mean and metric_std)."""
    lines = [f"{task.upper()}:", "", "| length | d_model | heads | " + " | ".join(PAPER) + " |",
             "|---|---|---|" + "---|" * len(PAPER)]
    for T in LENGTHS:
        for d in DIMS:
            for h in HEADS:
                res = found.get((T, d, h, task))
                if res is None:
                    continue
                by_var = {v["variant"]: v for v in res["variants"]}
                row = []
                for var in PAPER:
                    v = by_var.get(var)
                    if v is None:
                        row.append("-")
                        continue
                    row.append(f"{v['metric_mean']:.3f} ± {v['metric_std']:.3f}")
                lines.append(f"| {T} | {d} | {h} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "runs/table1"
    if not os.path.isdir(out):
        print(f"table1_summary: no folder {out}; run tools/table1_sweep.sh first", file=sys.stderr)
        return 2
    found = cells(out)
    total = len(LENGTHS) * len(DIMS) * len(HEADS) * len(TASKS)
    print(f"Table 1 sweep in {out}: {len(found)} of {total} cells finished "
          "(token accuracy, mean over seeds, then over cells; (n) = cells averaged)\n")
    print(table(found, lambda T, d, h: True, "All finished cells:"))
    for T in LENGTHS:
        print()
        if any(k[0] == T for k in found):
            print(table(found, lambda T2, d, h, T=T: T2 == T, f"Length {T}:"))
        else:
            print(f"Length {T}: no finished cells")
    print()
    print("By cell (mean ± standard deviation over the seeds):")
    for task in TASKS:
        if any(k[3] == task for k in found):
            print()
            print(by_cell(found, task))
    missing = [f"T{T}_d{d}_h{h}/{task}" for T in LENGTHS for d in DIMS for h in HEADS for task in TASKS
               if (T, d, h, task) not in found]
    print()
    print("Missing cells: " + (", ".join(missing) if missing else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
