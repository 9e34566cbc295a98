#include "models/distributed.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#ifdef QKVLAB_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: Open MPI's deprecated C++ bindings warn under -Wextra
#include <mpi.h>
#endif

namespace qkvlab::dist {

namespace {
CommStats g_stats;

#ifdef QKVLAB_MPI
void finalize_at_exit() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
}
#endif
}  // namespace

void init(int* argc, char*** argv) {
#ifdef QKVLAB_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;  // OpenMP threads run the kernels; only the main thread calls MPI
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  std::atexit(finalize_at_exit);
#else
  (void)argc;
  (void)argv;
#endif
}

bool built_with_mpi() {
#ifdef QKVLAB_MPI
  return true;
#else
  return false;
#endif
}

int rank() {
#ifdef QKVLAB_MPI
  int initialized = 0, r = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
#else
  return 0;
#endif
}

int size() {
#ifdef QKVLAB_MPI
  int initialized = 0, n = 1;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
#else
  return 1;
#endif
}

void abort(int status) {
#ifdef QKVLAB_MPI
  if (size() > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
  std::exit(status);
}

Array shard_rows(const Array& global, int r, int n) {
  check(n >= 1 && r >= 0 && r < n, "shard_rows: rank ", r, " of ", n);
  check(global.ndim() >= 1 && global.size(0) % n == 0, "shard_rows: ", global.size(0), " rows do not split into ",
        n, " equal shards");
  const int64_t b = global.size(0) / n;
  return global.narrow(0, int64_t(r) * b, b).contiguous();  // (N*b, ...) -> (b, ...)
}

double average_gradients(const std::vector<Tensor>& params, double loss, bool& stop) {
  const int n = size();
  if (n == 1) return loss;
  auto t0 = std::chrono::steady_clock::now();
  int64_t total = 0;
  for (auto& p : params) total += p.numel();
  std::vector<float> buf(size_t(total) + 2, 0.0f);  // [grads..., loss, stop]
  int64_t at = 0;
  for (auto& p : params) {  // pack: a parameter without a gradient contributes zeros
    if (p.grad().defined()) {
      Array g = p.grad().contiguous();
      std::memcpy(buf.data() + at, g.data<float>(), size_t(g.numel()) * sizeof(float));
    }
    at += p.numel();
  }
  buf[size_t(total)] = float(loss);
  buf[size_t(total) + 1] = stop ? 1.0f : 0.0f;
#ifdef QKVLAB_MPI
  MPI_Allreduce(MPI_IN_PLACE, buf.data(), int(buf.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
#endif
  const float inv = 1.0f / float(n);
  at = 0;
  for (auto& p : params) {  // unpack the mean into each gradient
    if (p.grad().defined()) {
      Array g = p.grad();
      if (!g.is_contiguous()) {  // write into a packed copy and hand that over as the gradient
        g = g.contiguous();
        Tensor(p).set_grad(g);  // Tensor is a handle: the copy sets the parameter's gradient
      }
      float* dst = g.data<float>();
      for (int64_t i = 0; i < g.numel(); ++i) dst[i] = buf[size_t(at + i)] * inv;
    }
    at += p.numel();
  }
  stop = buf[size_t(total) + 1] > 0.0f;
  g_stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  g_stats.calls += 1;
  g_stats.bytes = int64_t(buf.size() * sizeof(float));
  return double(buf[size_t(total)]) / double(n);
}

CommStats comm_stats() { return g_stats; }

uint64_t parameter_hash(const std::vector<Tensor>& params) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a offset basis
  for (auto& p : params) {
    Array a = p.data().contiguous();
    const auto* bytes = static_cast<const unsigned char*>(static_cast<const void*>(a.data<float>()));
    for (size_t i = 0; i < size_t(a.numel()) * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return h;
}

bool parameters_agree(const std::vector<Tensor>& params) {
  if (size() == 1) return true;
  uint64_t h = parameter_hash(params);
  uint64_t v[2] = {h, ~h};  // max of ~h is ~(min of h): one call gives both the largest and the smallest hash
#ifdef QKVLAB_MPI
  MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
#endif
  return v[0] == ~v[1];
}

}  // namespace qkvlab::dist
