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
# qkvlab restarts itself once (exec) to set a short OpenMP spin unless GOMP_SPINCOUNT, KMP_BLOCKTIME or
# OMP_WAIT_POLICY is set (app/openmp_policy.h); setting them here keeps a debugging session in one process.
set environment GOMP_SPINCOUNT=10000
set environment KMP_BLOCKTIME=0
