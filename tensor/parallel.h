// Thread count for every parallel kernel in qkvlab.
// Set from --threads or the QKVLAB_THREADS environment variable; defaults to all cores.
// Without OpenMP (make OPENMP=0) everything runs on one thread and these calls are no-ops.
#pragma once

namespace qkvlab {

int num_threads();             // threads the kernels may use (>= 1)
void set_num_threads(int n);   // n >= 1; throws std::invalid_argument otherwise
bool openmp_enabled();         // was the library built with OpenMP?

// Called first thing in main(). OpenMP threads that wait for work spin (busy-wait) by default, libgomp for about
// 300,000 iterations; on a machine where other processes also want the cores, the spinning threads take the CPU
// from the ones with work, and a step on 2 threads ran 40x slower than on 1 (tiny GPT: 92 against 3,800 tokens/s,
// measured on this 2-core machine under load; 4,500 with passive waiting). Fully passive waiting (sleep at once)
// costs the idle case instead: waking a sleeping thread takes tens of microseconds, and a step is hundreds of
// short parallel regions (idle machine, tiny GPT on 2 threads: 54-78k tokens/s passive, 96-109k with a spin of
// 10,000; a 256^3 product 238 against 295 GFLOP/s; spins of 1,000 and 3,000 gained nothing). The price is paid
// under load: with 6 busy processes on the 2 cores, 7-10k tokens/s against 14-18k passive (the 300,000 default
// gave 92). On a busy machine use --threads 1, or OMP_WAIT_POLICY=PASSIVE. So unless the user chose (OMP_WAIT_POLICY, GOMP_SPINCOUNT or
// KMP_BLOCKTIME is set), the program restarts itself once with GOMP_SPINCOUNT=10000 (libgomp spins ~10 us, then
// sleeps) and KMP_BLOCKTIME=0 (LLVM's libomp, which counts in ms, sleeps at once): the OpenMP runtime reads them
// only when it is loaded, before main(). Does nothing without OpenMP or when the restart fails.
void prefer_passive_openmp_wait(char** argv);

}  // namespace qkvlab
