// Thread count for every parallel kernel in qkvlab.
// Set from --threads or the QKVLAB_THREADS environment variable; defaults to all cores.
// Without OpenMP (make OPENMP=0) everything runs on one thread and these calls are no-ops.
#pragma once

namespace qkvlab {

int num_threads();             // threads the kernels may use (>= 1)
void set_num_threads(int n);   // n >= 1; throws std::invalid_argument otherwise
bool openmp_enabled();         // was the library built with OpenMP?

}  // namespace qkvlab
