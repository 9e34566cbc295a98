// How the qkvlab program asks the OpenMP runtime to wait, decided once at start-up (app/main.cpp).
// This is a policy of the program, not of the kernels: the library (tensor/parallel.h) only sets a thread count.
#pragma once

namespace qkvlab::app {

// OpenMP threads that wait for work spin for a while before they sleep. On a busy machine the spinning takes the
// CPU from threads that have work; on an idle one, sleeping makes each of a step's hundreds of short parallel
// regions pay a wake-up. So the policy looks at the machine once, at start-up:
// - the user chose a wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME is set), or the command runs on
//   one thread (--threads 1 or QKVLAB_THREADS=1): nothing changes;
// - no more threads of others are running (tensor/platform.h, other_runnable_threads()) than the cores this
//   command leaves free (all cores minus --threads or QKVLAB_THREADS; none by default): the runtime's default
//   spin (libgomp about 300,000 iterations, LLVM's libomp 200 ms);
// - otherwise (busy, or unknown as on macOS): re-execute this program once with OMP_WAIT_POLICY=PASSIVE (waiting
//   threads sleep at once, in both runtimes). A restart is needed because the runtime reads the variable only
//   when it is loaded, before main().
// The choice is marked in the environment, QKVLAB_OMP_AUTO=spin or, for an automatic PASSIVE, =<pid>, and a qkvlab
// started by another (the workers of `qkvlab bench`) keeps it: every row of a report runs under the policy its
// parent found at the start. (Workers that chose for themselves caught a passing process now and then and ran
// PASSIVE: `small` at 2 threads 25k tokens/s in some rows and 30k in others of one report.)
// Call it first thing in main(). Returns (doing nothing) without OpenMP, or when the restart fails. A machine
// that becomes busy after the start keeps the choice; on a busy machine `--threads 1` is faster still.
// The measurements behind it: docs/PERFORMANCE.md, "OpenMP: how long waiting threads spin".
void set_openmp_wait_policy(char** argv);

}  // namespace qkvlab::app
