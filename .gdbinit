# qkvlab's gdb setup: pretty-printers for qkvlab::Array / Tensor (tools/gdb/qkvlab.py). See docs/DEBUGGING.md.
#
# gdb does not run a project's .gdbinit unless you trust it. Either start gdb with it explicitly:
#     gdb -x .gdbinit build/debug/qkvlab_tests
# or trust this directory once, in ~/.gdbinit (replace the path with your checkout):
#     add-auto-load-safe-path /path/to/qkvlab/.gdbinit
# (the blunt `set auto-load safe-path /` trusts every directory).
# Start gdb from the repository root: the path below is relative to it.
source tools/gdb/qkvlab.py
# Show the real type behind a Node* / Node& (MulBackward, not Node) in `print *this`, `print *grad_fn`.
set print object on
set print pretty on
# ASan reserves a lot of address space; these keep gdb quiet about it under `make debug`.
set print thread-events off
# qkvlab may restart itself once (exec) to choose how idle OpenMP threads wait, unless OMP_WAIT_POLICY,
# GOMP_SPINCOUNT or KMP_BLOCKTIME is set (app/openmp_policy.h); setting one here keeps a debugging session in one
# process (and threads stopped at a breakpoint do not spin).
set environment OMP_WAIT_POLICY=PASSIVE
