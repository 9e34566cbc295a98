#include "bench/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <sstream>

#include "bench/harness.h"
#include "tensor/error.h"
#include "tensor/format.h"
#include "tensor/gemm.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

namespace qkvlab::bench {

const std::vector<MatShape>& matmul_shapes() {
  static const std::vector<MatShape> shapes = {
      {"sq256", 256, 256, 256, 1, false, false, "square"},
      {"sq512", 512, 512, 512, 1, false, false, "square"},
      {"sq1024", 1024, 1024, 1024, 1, false, false, "square"},
      {"sq2048", 2048, 2048, 2048, 1, false, false, "square"},
      {"s_qkv_fwd", 4096, 128, 384, 1, false, true, "small: x @ Wqkv^T (fused q,k,v projection)"},
      {"s_qkv_dx", 4096, 384, 128, 1, false, false, "small: dY @ Wqkv (input gradient)"},
      {"s_mlp_up", 4096, 128, 512, 1, false, true, "small: MLP up 128->512"},
      {"s_mlp_down", 4096, 512, 128, 1, false, true, "small: MLP down 512->128"},
      {"t_qkv_fwd", 2048, 64, 192, 1, false, true, "tiny: x @ Wqkv^T"},
      {"s_qkv_dw", 384, 4096, 128, 1, true, false, "small: dY^T @ x (weight gradient, K = 4096)"},
      {"s_attn_qk", 128, 32, 128, 128, false, true, "small: Q K^T per (batch, head)"},
      {"s_attn_av", 128, 128, 32, 128, false, false, "small: P V per (batch, head)"},
  };
  return shapes;
}

std::vector<MatShape> pick_shapes(const std::string& list) {
  const std::vector<MatShape>& known_shapes = matmul_shapes();
  if (list == "all" || list.empty()) return known_shapes;
  std::vector<MatShape> out;
  for (const std::string& item : split(list, ',')) {
    auto known = std::find_if(known_shapes.begin(), known_shapes.end(),
                              [&](const MatShape& s) { return s.name == item; });
    if (known != known_shapes.end()) {
      out.push_back(*known);
      continue;
    }
    std::vector<int64_t> d;
    for (const std::string& part : split(item, 'x')) {
      char* end = nullptr;
      const long long v = std::strtoll(part.c_str(), &end, 10);
      d.push_back(*end == '\0' && v > 0 && v <= 65536 ? v : -1);
    }
    std::string names;
    for (const auto& s : known_shapes) names += s.name + ", ";
    check((d.size() == 3 || d.size() == 4) && std::count(d.begin(), d.end(), -1) == 0, "bench matmul: unknown shape '",
          item, "'; valid: all, ", names, "or MxKxN / MxKxNxBATCH with sizes 1..65536");
    out.push_back({item, d[0], d[1], d[2], d.size() == 4 ? d[3] : 1, false, false, "custom"});
  }
  return out;
}

namespace {

// Operands of one shape, filled with uniform numbers in [-1, 1).
struct MatProblem {
  const MatShape& s;
  std::vector<float> A, B, C;
  std::vector<int64_t> a_off, b_off, c_off;
  int64_t rsa, csa, rsb, csb;
  explicit MatProblem(const MatShape& sh) : s(sh) {
    Generator gen(42);
    const int64_t a_sz = s.M * s.K, b_sz = s.K * s.N, c_sz = s.M * s.N;
    A.resize(size_t(a_sz * s.batch));
    B.resize(size_t(b_sz * s.batch));
    C.assign(size_t(c_sz * s.batch), 0.f);
    for (auto& x : A) x = float(gen.uniform(-1, 1));
    for (auto& x : B) x = float(gen.uniform(-1, 1));
    rsa = s.ta ? 1 : s.K, csa = s.ta ? s.M : 1;
    rsb = s.tb ? 1 : s.N, csb = s.tb ? s.K : 1;
    for (int64_t b = 0; b < s.batch; ++b) a_off.push_back(b * a_sz), b_off.push_back(b * b_sz), c_off.push_back(b * c_sz);
  }
  void run() {
    if (s.batch == 1)
      gemm(s.M, s.N, s.K, A.data(), rsa, csa, B.data(), rsb, csb, C.data(), s.N, false);
    else
      gemm_batched(s.batch, a_off.data(), b_off.data(), c_off.data(), s.M, s.N, s.K, A.data(), rsa, csa, B.data(), rsb,
                   csb, C.data(), s.N, false);
  }
  // Largest error of 64 sampled entries relative to sum_k |a b| (a wrong kernel shows up as ~1).
  double max_rel_err() const {
    Generator gen(7);
    double worst = 0;
    for (int t = 0; t < 64; ++t) {
      const int64_t b = gen.randint(0, s.batch), i = gen.randint(0, s.M), j = gen.randint(0, s.N);
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < s.K; ++p) {
        const double x = A[size_t(a_off[b] + i * rsa + p * csa)], y = B[size_t(b_off[b] + p * rsb + j * csb)];
        ref += x * y, mag += std::fabs(x * y);
      }
      worst = std::max(worst, std::fabs(C[size_t(c_off[b] + i * s.N + j)] - ref) / (mag + 1e-30));
    }
    return worst;
  }
};

// Best GFLOP/s of `samples` samples; each sample repeats the product until it has run >= min_ms. The best, not the
// median: on a shared machine the other processes only ever make a sample slower (as bench/sgemm_openblas.c).
double time_gflops(const std::function<void()>& call, double flops, int samples, double min_ms) {
  call();  // warm-up: caches, pack buffers, thread pool
  double t0 = now_s();
  call();
  const int reps = std::max(1, int(min_ms * 1e-3 / std::max(now_s() - t0, 1e-7)));
  std::vector<double> g;
  for (int k = 0; k < samples; ++k) {
    t0 = now_s();
    for (int r = 0; r < reps; ++r) call();
    g.push_back(flops / ((now_s() - t0) / reps) * 1e-9);
  }
  return *std::max_element(g.begin(), g.end());
}

}  // namespace

MatmulResult measure_matmul(const MatmulOptions& o) {
  MatmulResult res;
  std::string ref_names;  // the shapes OpenBLAS knows (custom sizes are ours only)
  for (const auto& s : o.shapes)
    if (s.what != "custom") ref_names += (ref_names.empty() ? "" : ",") + s.name;
  for (int r = 0; r < o.repeats; ++r) {
    for (int t : o.threads) {
      if (!o.openblas.empty() && !ref_names.empty()) {
        // sgemm_openblas prints: shape impl M K N batch op best_GF/s med_GF/s reps max_relerr
        // OPENBLAS_CORETYPE passes through: bench/run.sh sets it when OpenBLAS takes the CPU for an older core.
        const std::string out = run_child(
            "env -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=" + std::to_string(t) +
                " OMP_NUM_THREADS=1 " + shell_quote(o.openblas) + " --impl openblas --samples " +
                std::to_string(o.samples) + " --min-ms " + fixed(o.min_ms, 0) + " --shapes " + ref_names,
            "the OpenBLAS yardstick (" + o.openblas + ")");
        for (const std::string& line : split(out, '\n')) {
          std::istringstream in(line);
          std::vector<std::string> f{std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
          if (f.size() == 11 && f[1] == "openblas") res.openblas[{f[0], t}].push_back(std::atof(f[7].c_str()));
        }
      }
      set_num_threads(t);
      for (const auto& s : o.shapes) {
        MatProblem p(s);
        const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K) * double(s.batch);
        res.ours[{s.name, t}].push_back(time_gflops([&] { p.run(); }, flops, o.samples, o.min_ms));
        res.max_rel_err[s.name] = std::max(res.max_rel_err[s.name], p.max_rel_err());
      }
    }
  }
  return res;
}

}  // namespace qkvlab::bench
