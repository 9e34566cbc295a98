// Thread count for every parallel kernel in qkvlab.
// Set from --threads or the QKVLAB_THREADS environment variable; defaults to all cores.
// Without OpenMP (make OPENMP=0) everything runs on one thread and these calls are no-ops.
#pragma once

namespace qkvlab {

int num_threads();             // threads the kernels may use (>= 1)
void set_num_threads(int n);   // n >= 1; throws std::invalid_argument otherwise
bool openmp_enabled();         // was the library built with OpenMP?

// Called first thing in main(). OpenMP threads that wait for work spin (busy-wait) by default; on a machine where
// other processes also want the cores, the spinning threads take the CPU from the ones with work, and a step on 2
// threads ran 40x slower than on 1 (tiny GPT: 92 against 3,800 tokens/s, measured on this 2-core machine under
// load; 4,500 with passive waiting). So unless the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT is set), the
// program restarts itself once with OMP_WAIT_POLICY=PASSIVE: libgomp reads it only when it is loaded, before
// main(). Does nothing without OpenMP or when the restart fails.
void prefer_passive_openmp_wait(char** argv);

}  // namespace qkvlab
