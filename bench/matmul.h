// bench matmul: GFLOP/s of qkvlab::gemm (tensor/gemm.h) on square, GPT-layer and batched attention shapes, and,
// when given, of OpenBLAS cblas_sgemm (bench/sgemm_openblas.c) in its own process on the same shapes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qkvlab::bench {

// Names and layouts as in bench/sgemm_openblas.c, so that its OpenBLAS rows line up with ours.
// ta: A stored K x M (the product reads the transposed view); tb: B stored N x K (x @ W^T, as nn.Linear).
struct MatShape {
  std::string name;
  int64_t M, K, N, batch;
  bool ta, tb;
  std::string what;  // "custom" for sizes given as MxKxN
};
const std::vector<MatShape>& matmul_shapes();

// --shapes: "all", shape names, or custom sizes MxKxN (NN) / MxKxNxB (batched), comma separated.
std::vector<MatShape> pick_shapes(const std::string& list);

struct MatmulOptions {
  std::vector<MatShape> shapes;
  std::vector<int> threads;  // thread counts to measure
  std::string openblas;      // the yardstick program, or "" for ours alone
  int repeats = 3, samples = 9;
  double min_ms = 5;  // each sample repeats the product until it has run this long
};

using ShapeThreads = std::pair<std::string, int>;  // (shape name, threads)
struct MatmulResult {
  // One figure per repeat: the best GFLOP/s of `samples` samples.
  std::map<ShapeThreads, std::vector<double>> ours, openblas;
  // Per shape, the largest error of sampled entries relative to sum_k |a b| (a wrong kernel shows up as ~1).
  std::map<std::string, double> max_rel_err;
};

// Repeats x threads: OpenBLAS's run of every named shape (custom sizes are ours only), then ours.
MatmulResult measure_matmul(const MatmulOptions& o);

}  // namespace qkvlab::bench
