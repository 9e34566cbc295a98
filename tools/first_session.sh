#!/usr/bin/env bash
# tools/first_session.sh (make first-session): runs the README's "A first session" commands exactly as written, one
# after the other, in a fresh clone of this repository in a temporary folder, and fails on the first that fails.
#
#   bash tools/first_session.sh            reuse this checkout's build/release/qkvlab (what `make demo` leaves)
#   bash tools/first_session.sh --build    build qkvlab in the clone first, as a new user's `make demo` does
#   KEEP=1 bash tools/first_session.sh     keep the temporary clone (its path is printed)
#
# The commands are read from the README itself (the first ```sh block under "## A first session"), so the README
# cannot drift from what is checked. The clone is of the committed HEAD: commit before checking an edit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=0
case "${1:-}" in
  --build) BUILD=1 ;;
  "") ;;
  *) echo "first_session: unknown option '$1' (use --build)" >&2; exit 2 ;;
esac

# The commands: the first sh block after the heading, without blank lines.
mapfile -t CMDS < <(awk '/^## A first session/ {in_sec = 1; next}
                         in_sec && /^## / {exit}
                         in_sec && /^```sh/ {in_blk = 1; next}
                         in_blk && /^```/ {exit}
                         in_blk && NF {print}' README.md)
[ ${#CMDS[@]} -gt 0 ] || { echo "first_session: no \`\`\`sh block under '## A first session' in README.md" >&2; exit 1; }

TMP=$(mktemp -d /tmp/qkvlab-first-session.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$TMP"' EXIT
git clone -q "$ROOT" "$TMP/qkvlab"
cd "$TMP/qkvlab"
if [ "$BUILD" = 1 ]; then
  echo "== make build/release/qkvlab (in the clone)"
  make --no-print-directory build/release/qkvlab >"$TMP/build.log" 2>&1 || { tail -n 30 "$TMP/build.log"; exit 1; }
else
  [ -x "$ROOT/build/release/qkvlab" ] || { echo "first_session: $ROOT/build/release/qkvlab not built (make demo)" >&2; exit 2; }
  mkdir -p build/release && cp "$ROOT/build/release/qkvlab" build/release/qkvlab
fi
ln -sf release/qkvlab build/qkvlab

n=0
for cmd in "${CMDS[@]}"; do
  n=$((n + 1))
  echo "== [$n/${#CMDS[@]}] $cmd"
  start=$SECONDS
  if ! bash -c "$cmd" >"$TMP/step$n.log" 2>&1; then
    tail -n 20 "$TMP/step$n.log"
    echo "first_session: FAILED: $cmd" >&2
    exit 1
  fi
  tail -n 3 "$TMP/step$n.log"
  echo "   ($((SECONDS - start)) s)"
done
echo "first_session: all ${#CMDS[@]} commands of the README's first session ran as written${KEEP:+ (in $TMP/qkvlab)}"
