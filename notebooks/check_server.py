#!/usr/bin/python3
"""Checks that a student can open the notebooks: starts the notebook server the README names
(`jupyter notebook notebooks/`, Debian's jupyter-notebook from `bash tools/deps.sh --notebooks`) headless on a
free port, asks it over HTTP for the notebook list, checks that every notebooks/NN_*.ipynb is in it, and stops it.

    /usr/bin/python3 notebooks/check_server.py        (make check-notebook-server)

Exit status 0 when the server listed them all; 1 with one line saying what went wrong otherwise.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent


def fail(why, log=None):
    tail = ""
    if log is not None:
        log.seek(0)
        lines = log.read().decode(errors="replace").strip().splitlines()
        tail = (" (server log: " + lines[-1] + ")") if lines else ""
    print("check_server: " + why + tail, file=sys.stderr)
    sys.exit(1)


def main():
    jupyter = shutil.which("jupyter")
    if jupyter is None or subprocess.run([jupyter, "notebook", "--version"], capture_output=True).returncode != 0:
        fail("`jupyter notebook` is not installed: bash tools/deps.sh --notebooks (Debian's jupyter-notebook)")
    expected = sorted(p.name for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    with socket.socket() as s:  # a free port: the kernel picks one, we release it for the server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = os.urandom(8).hex()
    runtime = tempfile.mkdtemp(prefix="qkvlab-jupyter-")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=runtime, BROWSER="true")
    cmd = [jupyter, "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--NotebookApp.token={token}", f"--notebook-dir={HERE}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/?token={token}"
        listing, deadline = None, time.monotonic() + 60
        while listing is None:
            if server.poll() is not None:
                fail(f"the notebook server exited with status {server.returncode} before answering", log)
            if time.monotonic() > deadline:
                fail(f"the notebook server did not answer on port {port} within 60 s", log)
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    listing = json.load(r)
            except OSError:
                time.sleep(0.5)
        found = sorted(item["name"] for item in listing.get("content", []) if item.get("type") == "notebook")
        missing = [n for n in expected if n not in found]
        if not expected or missing:
            fail(f"the server lists {found}, missing {missing or 'every notebook'}")
        print(f"jupyter notebook on port {port} lists the {len(expected)} notebooks: {', '.join(expected)}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    main()
