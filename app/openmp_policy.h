// How the qkvlab program asks the OpenMP runtime to wait, decided once at start-up (app/main.cpp).
// This is a policy of the program, not of the kernels: the library (tensor/parallel.h) only sets a thread count.
#pragma once

namespace qkvlab::app {

// OpenMP threads that wait for work spin by default (libgomp about 300,000 iterations), which starves the threads
// that have work when the machine is busy; sleeping at once makes each of a step's hundreds of short parallel
// regions pay a wake-up on an idle machine. The compromise is a short spin: unless the user chose a wait policy
// (OMP_WAIT_POLICY, GOMP_SPINCOUNT or KMP_BLOCKTIME is set), re-execute this program once with
// GOMP_SPINCOUNT=10000 (libgomp spins ~10 us, then sleeps) and KMP_BLOCKTIME=0 (LLVM's libomp sleeps at once).
// A restart is needed because the runtime reads these variables only when it is loaded, before main(). Call it
// first thing in main(). Returns (doing nothing) without OpenMP, when the user chose, or when the restart fails.
// The measurements behind the numbers: docs/PERFORMANCE.md, "OpenMP: why the program restarts with a short spin".
void restart_with_short_openmp_spin(char** argv);

}  // namespace qkvlab::app
