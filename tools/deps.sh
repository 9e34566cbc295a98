#!/usr/bin/env bash
# make deps: installs the Debian/Ubuntu packages qkvlab needs. Safe to run twice (apt-get skips what is there).
#   bash tools/deps.sh            build + tests (+ small data sets: Fashion-MNIST, and the fortunes, the default
#                                 corpus of `qkvlab train --task lm`)
#   bash tools/deps.sh --bench    also OpenBLAS and PyTorch, the yardsticks of `make bench` (large: ~1 GB)
#   bash tools/deps.sh --notebooks  also what the notebooks need (the Jupyter notebook server, nbclient,
#                                 matplotlib, graphviz): then `jupyter notebook notebooks/` opens them
#   bash tools/deps.sh --report   also chromium, for the browser test of report.html
#   bash tools/deps.sh --arm64    also the aarch64 cross compiler, the arm64 zlib (Debian multiarch)
#                                 and qemu, for `make ARCH=arm64` and `make test-arm64` (Debian: Ubuntu keeps arm64
#                                 packages on another mirror, ports.ubuntu.com)
#   bash tools/deps.sh --all      everything above but --report
# Options combine: bash tools/deps.sh --bench --notebooks.
set -euo pipefail

CORE="g++ make catch2 libcli11-dev libstb-dev nlohmann-json3-dev zlib1g-dev python3 python3-numpy libjs-chart.js"
DATA="dataset-fashion-mnist fortunes"
NOTEBOOKS="jupyter-core jupyter-notebook python3-nbclient python3-ipykernel python3-matplotlib python3-nbformat graphviz"
BENCH="libopenblas-dev python3-torch"
REPORT="chromium python3-websocket"  # --report: the browser test of report.html (tests/report/browser_test.py)
ARM64="g++-aarch64-linux-gnu qemu-user-static zlib1g-dev:arm64"

PKGS="$CORE $DATA"
FOREIGN=""
for opt in "$@"; do  # one case per option group
  case "$opt" in
    --bench) PKGS="$PKGS $BENCH" ;;
    --notebooks) PKGS="$PKGS $NOTEBOOKS" ;;
    --report) PKGS="$PKGS $REPORT" ;;
    --arm64) PKGS="$PKGS $ARM64"; FOREIGN=arm64 ;;
    --all) PKGS="$PKGS $NOTEBOOKS $BENCH" ;;
    *) echo "deps: unknown option '$opt' (use --bench, --notebooks, --report, --arm64 or --all)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else echo "deps: run as root (or install sudo)" >&2; exit 2; fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$FOREIGN" ] && ! dpkg --print-foreign-architectures | grep -qx "$FOREIGN"; then
  echo "deps: dpkg --add-architecture $FOREIGN"
  $SUDO dpkg --add-architecture "$FOREIGN"
fi
echo "deps: apt-get update"
$SUDO apt-get update -qq
echo "deps: apt-get install $PKGS"
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
echo "deps: done"
