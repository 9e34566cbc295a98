// bench_matmul: GFLOP/s of qkvlab::gemm on square, GPT-layer and batched attention shapes.
//
// Build: `make` builds build/release/bench/bench_matmul (our kernel only). bench/run.sh also builds a second copy
// with -DWITH_OPENBLAS -lopenblas so that OpenBLAS's cblas_sgemm is timed on the same shapes, in a separate process.
//
// Usage: bench_matmul [--impl ours|openblas] [--threads 1,2] [--shapes sq,fwd_qkv,...] [--quick]
//                     [--samples N] [--min-ms MS] [--csv FILE] [--ref FILE] [--from-csv FILE] [--json] [--list]
//   --shapes   comma list; a shape is run when its name starts with one of the items (e.g. "sq" = all squares)
//   --csv      append one line per measurement: impl,shape,threads,best_gflops,median_gflops,max_rel_err
//   --ref      a CSV written by --csv (e.g. by the OpenBLAS copy): adds its figures and the ratio ours/ref
//   --from-csv measure nothing: print the table for the rows of this CSV (as written by --csv)
//   --json     print a JSON array instead of the markdown table
// Timing: each sample repeats the call until it has run >= --min-ms; best = fastest sample, median over samples.
// GFLOP/s = 2*M*N*K*batch / seconds. Ops: NN = A @ B, NT = A @ B^T (nn.Linear forward, Q K^T), TN = A^T @ B
// (Linear weight gradient); transposed operands are passed as strided views, never copied.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/gemm.h"
#include "tensor/parallel.h"

#ifdef WITH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
#endif

namespace {

struct Shape {
  const char* name;
  int64_t M, K, N, batch;
  bool ta, tb;  // A stored as K x M (A^T is the view), B stored as N x K
  const char* what;
};

// 'small' GPT preset: 32 x 128 = 4096 tokens, d 128, 4 heads of 32; 'tiny': 2048 tokens, d 64.
const Shape kShapes[] = {
    {"sq256", 256, 256, 256, 1, false, false, "square"},
    {"sq512", 512, 512, 512, 1, false, false, "square"},
    {"sq1024", 1024, 1024, 1024, 1, false, false, "square"},
    {"sq2048", 2048, 2048, 2048, 1, false, false, "square"},
    {"nn_4096x128x384", 4096, 128, 384, 1, false, false, "GPT layer, A @ B"},
    {"nn_4096x384x128", 4096, 384, 128, 1, false, false, "GPT layer, A @ B (qkv input grad)"},
    {"nn_4096x128x512", 4096, 128, 512, 1, false, false, "GPT layer, A @ B (MLP down input grad)"},
    {"nn_4096x512x128", 4096, 512, 128, 1, false, false, "GPT layer, A @ B (MLP up input grad)"},
    {"nn_2048x64x192", 2048, 64, 192, 1, false, false, "tiny GPT layer, A @ B"},
    {"fwd_qkv", 4096, 128, 384, 1, false, true, "Linear fwd x @ W^T, fused qkv 128->384"},
    {"fwd_mlp_up", 4096, 128, 512, 1, false, true, "Linear fwd x @ W^T, MLP 128->512"},
    {"fwd_mlp_down", 4096, 512, 128, 1, false, true, "Linear fwd x @ W^T, MLP 512->128"},
    {"fwd_tiny_qkv", 2048, 64, 192, 1, false, true, "Linear fwd x @ W^T, tiny qkv 64->192"},
    {"dw_qkv", 384, 4096, 128, 1, true, false, "Linear weight grad dY^T @ x, qkv"},
    {"dw_mlp_up", 512, 4096, 128, 1, true, false, "Linear weight grad dY^T @ x, MLP up"},
    {"dw_mlp_down", 128, 4096, 512, 1, true, false, "Linear weight grad dY^T @ x, MLP down"},
    {"dw_tiny_qkv", 192, 2048, 64, 1, true, false, "Linear weight grad dY^T @ x, tiny qkv"},
    {"attn_qk", 128, 32, 128, 128, false, true, "attention scores Q K^T: 128 x (128x32 @ 32x128)"},
    {"attn_av", 128, 128, 32, 128, false, false, "attention output P V: 128 x (128x128 @ 128x32)"},
};

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Problem {
  const Shape& s;
  std::vector<float> A, B, C;
  std::vector<int64_t> a_off, b_off, c_off;
  int64_t rsa, csa, rsb, csb;
  explicit Problem(const Shape& sh) : s(sh) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> U(-1.f, 1.f);
    const int64_t a_sz = s.M * s.K, b_sz = s.K * s.N, c_sz = s.M * s.N;
    A.resize(a_sz * s.batch);
    B.resize(b_sz * s.batch);
    C.assign(c_sz * s.batch, 0.f);
    for (auto& x : A) x = U(rng);
    for (auto& x : B) x = U(rng);
    rsa = s.ta ? 1 : s.K;
    csa = s.ta ? s.M : 1;
    rsb = s.tb ? 1 : s.N;
    csb = s.tb ? s.K : 1;
    for (int64_t b = 0; b < s.batch; ++b) {
      a_off.push_back(b * a_sz);
      b_off.push_back(b * b_sz);
      c_off.push_back(b * c_sz);
    }
  }
  void run_ours() {
    if (s.batch == 1)
      qkvlab::gemm(s.M, s.N, s.K, A.data(), rsa, csa, B.data(), rsb, csb, C.data(), s.N, false);
    else
      qkvlab::gemm_batched(s.batch, a_off.data(), b_off.data(), c_off.data(), s.M, s.N, s.K, A.data(), rsa, csa,
                           B.data(), rsb, csb, C.data(), s.N, false);
  }
#ifdef WITH_OPENBLAS
  void run_openblas() {  // a framework's loop over (batch, head) pairs, as bench/../sgemm_ref.c does
    for (int64_t b = 0; b < s.batch; ++b)
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, int(s.M),
                  int(s.N), int(s.K), 1.f, A.data() + a_off[b], int(s.ta ? s.M : s.K), B.data() + b_off[b],
                  int(s.tb ? s.K : s.N), 0.f, C.data() + c_off[b], int(s.N));
  }
#endif
  // Largest error of 64 sampled entries relative to sum_k |a||b| (a wrong kernel shows up as ~1).
  double check() const {
    std::mt19937 rng(7);
    double worst = 0;
    for (int t = 0; t < 64; ++t) {
      const int64_t b = rng() % s.batch, i = rng() % s.M, j = rng() % s.N;
      double ref = 0, mag = 0;
      for (int64_t p = 0; p < s.K; ++p) {
        const double x = A[a_off[b] + i * rsa + p * csa], y = B[b_off[b] + p * rsb + j * csb];
        ref += x * y;
        mag += std::fabs(x * y);
      }
      worst = std::max(worst, std::fabs(C[c_off[b] + i * s.N + j] - ref) / (mag + 1e-30));
    }
    return worst;
  }
};

struct Result {
  std::string shape, impl;
  int threads;
  double best, median, err;
};

}  // namespace

int main(int argc, char** argv) {
  std::string impl = "ours", ref_file, csv_file, from_csv;
  std::vector<int> threads = {1, 2};
  std::vector<std::string> filter;
  int samples = 7;
  double min_ms = 25;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_matmul: %s expects a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--impl") impl = next();
    else if (a == "--threads") {
      threads.clear();
      for (auto& t : split(next(), ',')) threads.push_back(std::atoi(t.c_str()));
    } else if (a == "--shapes") filter = split(next(), ',');
    else if (a == "--quick") samples = 3, min_ms = 8;
    else if (a == "--samples") samples = std::max(1, std::atoi(next().c_str()));
    else if (a == "--min-ms") min_ms = std::atof(next().c_str());
    else if (a == "--csv") csv_file = next();
    else if (a == "--ref") ref_file = next();
    else if (a == "--from-csv") from_csv = next();
    else if (a == "--json") json = true;
    else if (a == "--list") {
      for (const auto& s : kShapes)
        std::printf("%-16s %5lld x %5lld x %5lld  batch %3lld  %s%s  %s\n", s.name, (long long)s.M, (long long)s.K,
                    (long long)s.N, (long long)s.batch, s.ta ? "T" : "N", s.tb ? "T" : "N", s.what);
      return 0;
    } else {
      std::fprintf(stderr, "bench_matmul: unknown option '%s' (see the comment at the top of bench_matmul.cpp)\n",
                   a.c_str());
      return 2;
    }
  }
#ifndef WITH_OPENBLAS
  if (impl == "openblas") {
    std::fprintf(stderr, "bench_matmul: --impl openblas needs a build with -DWITH_OPENBLAS -lopenblas\n");
    return 2;
  }
#endif
  if (impl != "ours" && impl != "openblas") {
    std::fprintf(stderr, "bench_matmul: --impl expects ours or openblas, got '%s'\n", impl.c_str());
    return 2;
  }

  std::map<std::pair<std::string, int>, double> ref;  // (shape, threads) -> median GFLOP/s
  if (!ref_file.empty()) {
    std::ifstream in(ref_file);
    for (std::string line; std::getline(in, line);) {
      auto f = split(line, ',');
      if (f.size() >= 5 && f[0] != "impl") ref[{f[1], std::atoi(f[2].c_str())}] = std::atof(f[4].c_str());
    }
  }

  std::vector<Result> results;
  if (!from_csv.empty()) {
    std::ifstream in(from_csv);
    if (!in) {
      std::fprintf(stderr, "bench_matmul: cannot read '%s'\n", from_csv.c_str());
      return 2;
    }
    for (std::string line; std::getline(in, line);) {
      auto f = split(line, ',');
      if (f.size() >= 6 && f[0] == impl)
        results.push_back({f[1], f[0], std::atoi(f[2].c_str()), std::atof(f[3].c_str()), std::atof(f[4].c_str()),
                           std::atof(f[5].c_str())});
    }
    threads.clear();  // nothing to measure
  }
  for (int nt : threads) {
    if (nt < 1) continue;
#ifdef WITH_OPENBLAS
    if (impl == "openblas") openblas_set_num_threads(nt);
#endif
    if (impl == "ours") qkvlab::set_num_threads(nt);
    for (const auto& s : kShapes) {
      if (!filter.empty() && std::none_of(filter.begin(), filter.end(), [&](const std::string& f) {
            return std::string(s.name).rfind(f, 0) == 0;
          }))
        continue;
      Problem pr(s);
      auto call = [&] {
#ifdef WITH_OPENBLAS
        if (impl == "openblas") return pr.run_openblas();
#endif
        pr.run_ours();
      };
      call();  // warm-up: caches, pack buffers, thread pool
      const double err = pr.check();
      double t0 = now_s();
      call();
      const double once = std::max(now_s() - t0, 1e-7);
      const int reps = std::max(1, int(min_ms * 1e-3 / once));
      std::vector<double> g;
      for (int k = 0; k < samples; ++k) {
        t0 = now_s();
        for (int r = 0; r < reps; ++r) call();
        const double dt = (now_s() - t0) / reps;
        g.push_back(2.0 * double(s.M) * double(s.N) * double(s.K) * double(s.batch) / dt * 1e-9);
      }
      std::sort(g.begin(), g.end());
      results.push_back({s.name, impl, nt, g.back(), g[g.size() / 2], err});
    }
  }

  if (!csv_file.empty()) {
    std::ofstream out(csv_file, std::ios::app);
    for (const auto& r : results)
      out << r.impl << ',' << r.shape << ',' << r.threads << ',' << r.best << ',' << r.median << ',' << r.err << '\n';
  }
  auto find_shape = [](const std::string& n) -> const Shape& {
    for (const auto& s : kShapes)
      if (n == s.name) return s;
    return kShapes[0];
  };
  if (json) {
    std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      const Shape& s = find_shape(r.shape);
      std::printf("  {\"shape\": \"%s\", \"impl\": \"%s\", \"M\": %lld, \"K\": %lld, \"N\": %lld, \"batch\": %lld, "
                  "\"op\": \"%s%s\", \"threads\": %d, \"best_gflops\": %.2f, \"median_gflops\": %.2f, "
                  "\"max_rel_err\": %.3g",
                  r.shape.c_str(), r.impl.c_str(), (long long)s.M, (long long)s.K, (long long)s.N,
                  (long long)s.batch, s.ta ? "T" : "N", s.tb ? "T" : "N", r.threads, r.best, r.median, r.err);
      auto it = ref.find({r.shape, r.threads});
      if (it != ref.end()) std::printf(", \"ref_median_gflops\": %.2f, \"ratio\": %.3f", it->second, r.median / it->second);
      std::printf("}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("]\n");
  } else {
    std::printf("| shape | M x K x N | batch | op | threads | %s best GF/s | %s median GF/s |%s check |\n",
                impl.c_str(), impl.c_str(), ref.empty() ? "" : " OpenBLAS median GF/s | ratio |");
    std::printf("|---|---|---|---|---|---|---|%s---|\n", ref.empty() ? "" : "---|---|");
    for (const auto& r : results) {
      const Shape& s = find_shape(r.shape);
      std::printf("| %s | %lldx%lldx%lld | %lld | %s%s | %d | %.1f | %.1f |", r.shape.c_str(), (long long)s.M,
                  (long long)s.K, (long long)s.N, (long long)s.batch, s.ta ? "T" : "N", s.tb ? "T" : "N", r.threads,
                  r.best, r.median);
      if (!ref.empty()) {
        auto it = ref.find({r.shape, r.threads});
        if (it != ref.end()) std::printf(" %.1f | %.2f |", it->second, r.median / it->second);
        else std::printf(" - | - |");
      }
      std::printf(" %s |\n", r.err < 1e-5 ? "ok" : "FAIL");
    }
  }
  for (const auto& r : results)
    if (!(r.err < 1e-5)) {
      std::fprintf(stderr, "bench_matmul: %s (%s, %d threads) gave wrong results (rel err %.3g)\n", r.shape.c_str(),
                   r.impl.c_str(), r.threads, r.err);
      return 1;
    }
  return 0;
}
