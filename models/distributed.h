// Data-parallel training over MPI (`make MPI=1`, run with `mpirun -np N build/mpi/qkvlab train ...`).
//
// Every rank holds a full copy of the model, made from the same seed. Each step, every rank draws the same global
// batch of N x b examples (the data generator and the sampler advance identically everywhere), keeps its own rows
// [rank*b, (rank+1)*b), runs forward and backward on them, and then ONE MPI_Allreduce sums a fused buffer
//     [ grad of parameter 0 | grad of parameter 1 | ... | loss | stop ]
// after which every rank divides by N: the mean gradient of the global batch, the global mean loss, and whether
// any rank was asked to stop (Ctrl-C). Every rank then takes the same AdamW step, so the parameters stay identical;
// parameters_agree() checks that cheaply (a hash of their bytes, compared with one small allreduce).
//
// Without MPI (the normal build) this file compiles to a world of one rank: rank() is 0, size() is 1, and the
// reductions do nothing. Nothing here includes <mpi.h> except distributed.cpp under QKVLAB_MPI.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace qkvlab::dist {

// Starts MPI when the build has it (idempotent; main() and the MPI tests call it). Finalizes at exit.
void init(int* argc, char*** argv);
bool built_with_mpi();
int rank();   // 0 without MPI
int size();   // 1 without MPI
// Ends every rank at once with this exit status (after an error on one rank the others would wait forever).
[[noreturn]] void abort(int status);

// Rows [rank*b, (rank+1)*b) of a global batch of size()*b rows (dim 0), as a contiguous array.
Array shard_rows(const Array& global, int rank, int size);

// Averages the gradients of `params` over the ranks in place with one MPI_Allreduce over a fused buffer, together
// with the step's loss and stop flag. Returns the global mean loss; `stop` becomes true on every rank when it was
// true on any. A parameter without a gradient contributes zeros and stays without one (every rank runs the same
// graph, so this is the same parameter on every rank). With one rank: returns loss, touches nothing.
double average_gradients(const std::vector<Tensor>& params, double loss, bool& stop);

// Time spent in average_gradients (packing, MPI_Allreduce, unpacking) and how often it ran, for the scaling figures.
struct CommStats {
  double seconds = 0.0;
  int64_t calls = 0;
  int64_t bytes = 0;  // of the fused buffer, last call
};
CommStats comm_stats();

// A 64-bit hash (FNV-1a) of the parameters' bytes, in order.
uint64_t parameter_hash(const std::vector<Tensor>& params);
// True when every rank holds bit-identical parameters (one allreduce of the hash). True with one rank.
bool parameters_agree(const std::vector<Tensor>& params);

}  // namespace qkvlab::dist
