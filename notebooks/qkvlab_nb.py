"""Helpers shared by the notebooks: find the repository, build it if needed, compile small C++ programs against
the library, and run the `qkvlab` command. Each function prints what it runs, so a student can repeat it in a shell.

    import qkvlab_nb as nb
    nb.setup("01_autograd")          # builds build/release/qkvlab if missing; works in build/notebooks/01_autograd
    nb.cxx("expr.cpp")               # g++ ... expr.cpp build/release/libqkvlab.a -> ./expr
    print(nb.run("./expr"))          # its stdout; a non-zero exit raises (so a broken cell stops the notebook)
    table = nb.qkvlab_json("cache", "--preset", "300M")
"""
import json
import os
import pathlib
import shlex
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent  # notebooks/ sits at the top of the repository
BUILD = ROOT / "build" / "release"
QKVLAB = BUILD / "qkvlab"
LIB = BUILD / "libqkvlab.a"
# Optional data files you add yourself (e.g. tinyshakespeare.txt): data/ in the repository, or $QKVLAB_DATA.
DATA = pathlib.Path(os.environ.get("QKVLAB_DATA", ROOT / "data"))
# The corpus `qkvlab train --task lm` learns without --data: Debian's fortunes (package `fortunes`, make deps).
CORPUS = pathlib.Path(os.environ.get("QKVLAB_CORPUS_DIR", "/usr/share/games/fortunes"))


def setup(name):
    """Builds qkvlab when it is missing (first run of a fresh clone, or a hosted notebook service) and moves into
    build/notebooks/<name>, so the files a notebook writes never land in the source tree."""
    if not (QKVLAB.exists() and LIB.exists()):
        print("building qkvlab (a few minutes, once): make -j2 build/release/qkvlab")
        subprocess.run(["make", "-j2", "--no-print-directory", "build/release/qkvlab"], cwd=ROOT, check=True)
    # Tiny models train fastest on one thread, and timings stay steady on a busy machine. Set QKVLAB_THREADS
    # before starting Jupyter to use more.
    os.environ.setdefault("QKVLAB_THREADS", "1")
    work = ROOT / "build" / "notebooks" / name
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    print(f"repository: {ROOT}\nworking in: {work}\nthreads:    {os.environ['QKVLAB_THREADS']}")
    return work


def cxx(source, output=None):
    """Compiles one C++ file against the library, with the flags of the Makefile's release build (-rdynamic:
    anomaly mode's call stacks show function names)."""
    output = output or pathlib.Path(source).stem
    cmd = [*shlex.split(os.environ.get("CXX", "g++")), "-std=c++20", "-O2", "-march=native", "-fopenmp", f"-I{ROOT}",
           str(source), str(LIB), "-lz", "-lpthread", "-rdynamic", "-o", str(output)]
    print(" ".join(shlex.quote(c) for c in cmd).replace(str(ROOT), "$ROOT"))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("compilation failed:\n" + done.stderr[-4000:])
    return "./" + str(output)


def run(*cmd, check=True):
    """Runs a program and returns its stdout. With check=False a failure is returned (stdout + stderr) instead
    of raised: for the cells that show an error on purpose."""
    cmd = [str(c) for c in cmd]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout if check else done.stdout + done.stderr


def qkvlab(*args, quiet=False):
    """Runs build/release/qkvlab with these arguments, prints the command and its output, returns the seconds."""
    args = [str(a) for a in args]
    shown = " ".join(shlex.quote(a) for a in args)
    print("$ qkvlab " + shown.replace(str(ROOT), "$ROOT"))
    start = time.perf_counter()
    done = subprocess.run([str(QKVLAB), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"qkvlab {args[0]} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    if not quiet:
        print(done.stdout, end="")
    return seconds


def qkvlab_json(*args):
    """Runs qkvlab with --json and returns the parsed document."""
    args = [str(a) for a in args]
    done = subprocess.run([str(QKVLAB), *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"qkvlab {args[0]} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def markdown_table(header, rows):
    """A markdown table (IPython.display.Markdown renders it; it also reads well as plain text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
