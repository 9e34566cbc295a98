#!/usr/bin/python3
"""Executes notebooks headless with nbclient and fails on the first cell error.

    /usr/bin/python3 notebooks/run_notebooks.py notebooks/01_autograd.ipynb ...           # test: temp copies
    /usr/bin/python3 notebooks/run_notebooks.py --inplace notebooks/01_autograd.ipynb ... # refresh the outputs

Without --inplace the executed copy goes to a temporary folder, so the committed notebooks stay as they are.
Each notebook runs with its own folder as the working directory, as Jupyter would start it.
"""
import argparse
import os
import pathlib
import resource
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def execute(path, inplace, timeout):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False, startup_timeout=300,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    cpu_start = children_cpu()
    try:
        client.execute()
    except CellExecutionError as e:  # a cell raised: its traceback names the cell
        print(f"FAIL {path.name} after {time.perf_counter() - start:.0f} s:\n{e}", file=sys.stderr)
        return False
    except Exception as e:  # the kernel did not start, died, or a cell timed out
        print(f"FAIL {path.name} after {time.perf_counter() - start:.0f} s: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    seconds = time.perf_counter() - start
    cpu = children_cpu() - cpu_start  # the kernel and everything it ran (g++, qkvlab), once the kernel has exited
    if inplace:
        nbformat.write(nb, path)
        out = path
    else:
        out = pathlib.Path(tempfile.mkdtemp(prefix="qkvlab-nb-")) / path.name
        nbformat.write(nb, out)
    print(f"ok   {path.name}  {seconds:.0f} s wall, {cpu:.0f} s CPU  -> {out}")
    return True


def main():
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets the kernel's debugger warning
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--inplace", action="store_true", help="write the outputs back into the notebooks")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell (generous: a shared machine can be slow)")
    args = parser.parse_args()
    failed = [p for p in args.notebooks if not execute(p.resolve(), args.inplace, args.timeout)]
    if failed:
        print(f"{len(failed)} of {len(args.notebooks)} notebooks failed: {' '.join(p.name for p in failed)}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
