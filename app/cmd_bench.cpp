// qkvlab bench: performance figures, optionally beside the reference implementations (bench/run.sh, `make bench`).
//
//   bench matmul    GFLOP/s of qkvlab::gemm on square, GPT-layer and batched attention shapes
//   bench train     GPT training tokens/s and peak RSS, presets tiny/small x variants, each row in its own process
//   bench decode    generation tokens/s with and without the KV cache, and the cache bytes per token
//   bench scaling   training step time vs context and vs width, QKV against Q-K=V, as a table and PNG charts
//
// Yardsticks (optional): --openblas PROGRAM (bench/sgemm_openblas.c built with -lopenblas) and --torch
// COMMAND (/usr/bin/python3 bench/torch_gpt.py) run the same work in their own processes,
// alternating with ours row by row, so that slow phases of a busy machine hit both; the tables then gain a ratio
// column (ours / theirs). Figures are the median of --repeats independent measurements with [min-max].
// Threads: --threads N measures N only; the default measures 1 thread and all cores.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "app/common.h"
#include "plot/plot.h"
#include "models/generate.h"
#include "models/transformer.h"
#include "nn/optim.h"
#include "tensor/gemm.h"
#include "tensor/parallel.h"

namespace qkvlab::app {

namespace {
using nlohmann::ordered_json;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- small helpers: statistics, lists, child processes ----------------------------------------------------
struct Stats {
  double median = 0, lo = 0, hi = 0;
  int n = 0;
};
Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.lo = v.front(), s.hi = v.back(), s.n = int(n);
  return s;
}
// "123.4 [120.1-125.0]" (just the median when there is one value)
std::string cell(const Stats& s, int decimals) {
  if (s.n == 0) return "-";
  std::string out = fixed(s.median, decimals);
  if (s.n > 1) out += " [" + fixed(s.lo, decimals) + "-" + fixed(s.hi, decimals) + "]";
  return out;
}
ordered_json to_json(const Stats& s) {
  if (s.n == 0) return nullptr;
  return {{"median", s.median}, {"min", s.lo}, {"max", s.hi}, {"n", s.n}};
}
std::string ratio(const Stats& ours, const Stats& ref) {
  return ours.n && ref.n && ref.median > 0 ? fixed(ours.median / ref.median, 2) : "-";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Thread counts to measure: --threads N, else 1 and all cores.
std::vector<int> thread_counts(const CommonFlags& f) {
  if (f.threads > 0) return {f.threads};
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  return hw > 1 ? std::vector<int>{1, hw} : std::vector<int>{1};
}

std::string quote(const std::string& s) {  // for /bin/sh
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A temporary file, removed when this goes out of scope.
struct TempFile {
  std::string path;
  TempFile() {
    std::string tmpl = "/tmp/qkvlab_bench_XXXXXX";
    const int fd = ::mkstemp(tmpl.data());
    check(fd >= 0, "bench: cannot create a temporary file in /tmp");
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string read() const {
    std::ifstream f(path);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
};

// Runs a shell command and returns its stdout. Its stderr is kept aside: on failure its last line goes into the
// one-line error, so a failing yardstick does not flood the terminal.
std::string run_child(const std::string& cmd, const std::string& what) {
  TempFile err;
  FILE* p = ::popen((cmd + " 2>" + quote(err.path)).c_str(), "r");
  check(p != nullptr, "bench: cannot start ", what);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) {
    std::string last;
    for (const auto& line : split(err.read(), '\n')) last = line;
    fail("bench: ", what, " failed (exit status ", WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")",
         last.empty() ? "" : ": " + last, "; command: ", cmd);
  }
  return out;
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  check(n > 0, "bench: cannot find the qkvlab program (/proc/self/exe)");
  return std::string(buf, size_t(n));
}

double peak_rss_mb() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KB on Linux
}

void print_title(const std::string& title, const std::string& note) {
  std::printf("## %s\n\n%s%s", title.c_str(), note.c_str(), note.empty() ? "" : "\n\n");
}

// ---- matmul -------------------------------------------------------------------------------------------------
// Names and layouts as in bench/sgemm_openblas.c, so that its OpenBLAS rows line up with ours.
// ta: A stored K x M (the product reads the transposed view); tb: B stored N x K (x @ W^T, as nn.Linear).
struct MatShape {
  std::string name;
  int64_t M, K, N, batch;
  bool ta, tb;
  std::string what;
};
const std::vector<MatShape> kMatShapes = {
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

// --shapes: "all", shape names, or custom sizes MxKxN (NN) / MxKxNxB (batched), comma separated.
std::vector<MatShape> pick_shapes(const std::string& list) {
  if (list == "all" || list.empty()) return kMatShapes;
  std::vector<MatShape> out;
  for (const std::string& item : split(list, ',')) {
    auto known = std::find_if(kMatShapes.begin(), kMatShapes.end(), [&](const MatShape& s) { return s.name == item; });
    if (known != kMatShapes.end()) {
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
    for (const auto& s : kMatShapes) names += s.name + ", ";
    check((d.size() == 3 || d.size() == 4) && std::count(d.begin(), d.end(), -1) == 0, "bench matmul: unknown shape '",
          item, "'; valid: all, ", names, "or MxKxN / MxKxNxBATCH with sizes 1..65536");
    out.push_back({item, d[0], d[1], d[2], d.size() == 4 ? d[3] : 1, false, false, "custom"});
  }
  return out;
}

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

struct MatmulArgs {
  CommonFlags common;
  std::string shapes = "all", openblas;
  int repeats = 3, samples = 9;
  double min_ms = 5;  // short samples: on a busy machine a short one has a chance to run undisturbed
  bool quick = false;
};

void run_matmul(MatmulArgs a) {
  apply_common_flags(a.common);
  if (a.quick) a.repeats = std::min(a.repeats, 1), a.samples = 5, a.min_ms = 3;
  check(a.repeats >= 1 && a.samples >= 1, "bench matmul: --repeats and --samples must be >= 1");
  const std::vector<MatShape> shapes = pick_shapes(a.shapes);
  const std::vector<int> threads = thread_counts(a.common);
  std::map<std::pair<std::string, int>, std::vector<double>> ours, ref;  // (shape, threads) -> medians per repeat
  std::map<std::string, double> err;
  std::string ref_names;  // the shapes OpenBLAS knows (custom sizes are ours only)
  for (const auto& s : shapes)
    if (s.what != "custom") ref_names += (ref_names.empty() ? "" : ",") + s.name;
  for (int r = 0; r < a.repeats; ++r) {
    for (int t : threads) {
      if (!a.openblas.empty() && !ref_names.empty()) {
        // sgemm_openblas prints: shape impl M K N batch op best_GF/s med_GF/s reps max_relerr
        const std::string out = run_child(
            "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=" + std::to_string(t) +
                " OMP_NUM_THREADS=1 " + quote(a.openblas) + " --impl openblas --samples " + std::to_string(a.samples) +
                " --min-ms " + fixed(a.min_ms, 0) + " --shapes " + ref_names,
            "the OpenBLAS yardstick (" + a.openblas + ")");
        for (const std::string& line : split(out, '\n')) {
          std::istringstream in(line);
          std::vector<std::string> f{std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
          if (f.size() == 11 && f[1] == "openblas") ref[{f[0], t}].push_back(std::atof(f[7].c_str()));
        }
      }
      set_num_threads(t);
      for (const auto& s : shapes) {
        MatProblem p(s);
        const double flops = 2.0 * double(s.M) * double(s.N) * double(s.K) * double(s.batch);
        ours[{s.name, t}].push_back(time_gflops([&] { p.run(); }, flops, a.samples, a.min_ms));
        err[s.name] = std::max(err[s.name], p.max_rel_err());
      }
    }
  }
  const bool have_ref = !ref.empty();
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& s : shapes)
    for (int t : threads) {
      const Stats o = stats(ours[{s.name, t}]), b = stats(ref[{s.name, t}]);
      const std::string op = std::string(s.ta ? "T" : "N") + (s.tb ? "T" : "N");
      rows.push_back({{"shape", s.name}, {"M", s.M}, {"K", s.K}, {"N", s.N}, {"batch", s.batch}, {"op", op},
                      {"threads", t}, {"gflops", to_json(o)}, {"openblas_gflops", to_json(b)},
                      {"ratio", o.n && b.n ? ordered_json(o.median / b.median) : ordered_json(nullptr)},
                      {"max_rel_err", err[s.name]}, {"ok", err[s.name] < 1e-5}});
      std::vector<std::string> row{s.name, std::to_string(s.M) + "x" + std::to_string(s.K) + "x" + std::to_string(s.N),
                                   std::to_string(s.batch), op, std::to_string(t), cell(o, 1)};
      if (have_ref) row.push_back(cell(b, 1)), row.push_back(ratio(o, b));
      row.push_back(err[s.name] < 1e-5 ? "ok" : "WRONG");
      table.push_back(row);
    }
  if (a.common.json) {
    std::printf("%s\n", ordered_json{{"section", "matmul"}, {"repeats", a.repeats}, {"rows", rows}}.dump(2).c_str());
  } else {
    print_title("matmul: GFLOP/s of qkvlab::gemm (float32)",
                "median [min-max] of " + std::to_string(a.repeats) + " repeats, each the best of " +
                    std::to_string(a.samples) + " samples; op: N = as stored, T = transposed view; " +
                    (have_ref ? "ratio = ours / OpenBLAS cblas_sgemm (one call per batch entry, own process)"
                              : "no OpenBLAS figures (see bench/run.sh)"));
    std::vector<std::string> head{"shape", "M x K x N", "batch", "op", "threads", "ours GF/s"};
    if (have_ref) head.push_back("OpenBLAS GF/s"), head.push_back("ratio");
    head.push_back("check");
    std::printf("%s\n", markdown_table(head, table).c_str());
  }
  for (const auto& [name, e] : err) check(e < 1e-5, "bench matmul: ", name, " gave wrong results (relative error ", e, ")");
}

// ---- train --------------------------------------------------------------------------------------------------
// The work of bench/torch_gpt.py: a GPT preset on uniform random tokens (vocabulary 65), AdamW
// (lr 1e-3, weight decay 0.01), batch 32; tokens/s = batch x context / median step time after warm-up.
struct TrainArgs {
  CommonFlags common;
  std::string presets = "tiny,small", variants = "qkv,kv,single", torch;
  int repeats = 3, steps = 0, warmup = 2;
  int64_t batch = 32;
  bool quick = false, worker = false, recompute = false;
};

// One (preset, variant) at the current thread count in this process: median step seconds, loss first/last.
struct TrainCell {
  std::vector<double> step_s;
  double first_loss = 0, last_loss = 0;
  int64_t params = 0, tokens = 0;
};

ModelConfig bench_model(const std::string& preset, const std::string& variant) {
  ModelConfig cfg = gpt_preset(preset);
  cfg.vocab_size = 65;
  cfg.variant = parse_variant(variant);
  cfg.resolve();
  return cfg;
}

TrainCell train_cell(const ModelConfig& cfg, int64_t batch, int warmup, int steps, bool recompute) {
  GPT model(cfg, 1234);
  model.set_recompute(recompute);
  AdamW opt(make_param_groups(model, 0.01), 1e-3);
  Generator gen(42);
  std::vector<Array> xs, ys;
  for (int i = 0; i < 4; ++i) {  // four fixed batches of uniform random tokens, as the PyTorch reference
    std::vector<int64_t> x, y;
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<int64_t> seq;
      for (int64_t t = 0; t <= cfg.context; ++t) seq.push_back(gen.randint(0, cfg.vocab_size));
      x.insert(x.end(), seq.begin(), seq.end() - 1);
      y.insert(y.end(), seq.begin() + 1, seq.end());
    }
    xs.push_back(Array::from_vector(x, {batch, cfg.context}));
    ys.push_back(Array::from_vector(y, {batch, cfg.context}));
  }
  TrainCell c;
  c.params = model.num_parameters();
  c.tokens = batch * cfg.context;
  model.train();
  for (int i = 0; i < warmup + steps; ++i) {
    const double t0 = now_s();
    opt.zero_grad();
    StepResult r = model_loss(model, xs[size_t(i % 4)], ys[size_t(i % 4)]);
    r.loss.backward();
    opt.step();
    const double loss = r.loss.item();
    if (i >= warmup) c.step_s.push_back(now_s() - t0);
    if (i == 0) c.first_loss = loss;
    c.last_loss = loss;
  }
  return c;
}

int default_steps(const std::string& preset, bool quick) {
  return preset == "tiny" ? (quick ? 10 : 30) : (quick ? 3 : 8);
}

struct TrainRow {
  std::vector<double> tps, rss;  // one per repeat (process)
  int64_t params = 0;
};

// The variants bench/torch_gpt.py has (no GQA, no (X)+ bias): "" for the others.
std::string torch_variant(const std::string& v) {
  return v == "qkv" || v == "kv" || v == "qk" || v == "single" ? v : "";
}

void run_train(TrainArgs a) {
  apply_common_flags(a.common);
  if (a.quick) a.repeats = std::min(a.repeats, 1);
  check(a.repeats >= 1 && a.warmup >= 0 && a.steps >= 0 && a.batch >= 1,
        "bench train: --repeats and --batch must be >= 1, --steps and --warmup >= 0");
  const std::vector<std::string> presets = split(a.presets, ','), variants = split(a.variants, ',');
  check(!presets.empty() && !variants.empty(), "bench train: --presets and --variants must not be empty");
  for (const auto& p : presets)
    for (const auto& v : variants) bench_model(p, v);  // bad names fail here, before any work
  if (a.worker) {  // one row in this process: the parent reads the RESULT line
    const ModelConfig cfg = bench_model(presets[0], variants[0]);
    const TrainCell c = train_cell(cfg, a.batch, a.warmup, a.steps > 0 ? a.steps : default_steps(presets[0], a.quick),
                                   a.recompute);
    ordered_json j{{"step_s", c.step_s}, {"tokens", c.tokens}, {"params", c.params}, {"peak_rss_mb", peak_rss_mb()},
                   {"tensor_peak_mb", double(Storage::peak_bytes()) / (1 << 20)},
                   {"loss_first", c.first_loss}, {"loss_last", c.last_loss}};
    std::printf("RESULT %s\n", j.dump().c_str());
    return;
  }
  const std::vector<int> threads = thread_counts(a.common);
  const std::string exe = self_exe();
  std::map<std::tuple<std::string, std::string, int>, TrainRow> ours, ref;
  for (int r = 0; r < a.repeats; ++r)
    for (const auto& p : presets)
      for (const auto& v : variants)
        for (int t : threads) {
          const int steps = a.steps > 0 ? a.steps : default_steps(p, a.quick);
          if (!a.torch.empty() && !torch_variant(v).empty()) {
            TempFile out;
            run_child(a.torch + " --configs " + p + " --variants " + torch_variant(v) + " --threads " +
                          std::to_string(t) + " --repeats 1 --steps " + std::to_string(steps) + " --warmup " +
                          std::to_string(a.warmup) + " --json " + quote(out.path),
                      "the PyTorch yardstick");
            const auto j = ordered_json::parse(out.read());
            std::vector<double> s = j["train_s"];
            TrainRow& row = ref[{p, v, t}];
            row.tps.push_back(j["tokens"].get<double>() / stats(s).median);
            row.rss.push_back(j["peak_rss_kb"].get<double>() / 1024.0);
            row.params = j["n_params"];
          }
          const std::string out = run_child(quote(exe) + " bench train --worker --presets " + p + " --variants " + v +
                                                " --threads " + std::to_string(t) + " --steps " + std::to_string(steps) +
                                                " --warmup " + std::to_string(a.warmup) + " --batch " +
                                                std::to_string(a.batch) + (a.recompute ? " --recompute" : ""),
                                            "a training row (" + p + ", " + v + ")");
          const auto at = out.rfind("RESULT ");
          check(at != std::string::npos, "bench train: the worker printed no result");
          const auto j = ordered_json::parse(out.substr(at + 7));
          std::vector<double> s = j["step_s"];
          TrainRow& row = ours[{p, v, t}];
          row.tps.push_back(j["tokens"].get<double>() / stats(s).median);
          row.rss.push_back(j["peak_rss_mb"]);
          row.params = j["params"];
        }
  const bool have_ref = !ref.empty();
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& p : presets)
    for (const auto& v : variants)
      for (int t : threads) {
        const TrainRow &o = ours[{p, v, t}], &b = ref[{p, v, t}];
        const Stats ot = stats(o.tps), orss = stats(o.rss), bt = stats(b.tps), brss = stats(b.rss);
        rows.push_back({{"preset", p}, {"variant", v}, {"threads", t}, {"params", o.params},
                        {"tokens_per_s", to_json(ot)}, {"peak_rss_mb", to_json(orss)},
                        {"torch_tokens_per_s", to_json(bt)}, {"torch_peak_rss_mb", to_json(brss)},
                        {"ratio", ot.n && bt.n ? ordered_json(ot.median / bt.median) : ordered_json(nullptr)}});
        std::vector<std::string> row{p, v, std::to_string(t), with_commas(o.params), cell(ot, 0), cell(orss, 0)};
        if (have_ref) row.insert(row.end(), {cell(bt, 0), cell(brss, 0), ratio(ot, bt)});
        table.push_back(row);
      }
  if (a.common.json) {
    std::printf("%s\n", ordered_json{{"section", "train"}, {"repeats", a.repeats}, {"rows", rows}}.dump(2).c_str());
    return;
  }
  const std::string how = a.recompute ? "ours recomputes each block's activations in backward instead of keeping "
                                        "them (train --recompute, autograd/recompute.h); PyTorch keeps them; "
                                      : "";
  print_title(a.recompute ? "train: GPT training tokens/s and peak RSS, with --recompute"
                          : "train: GPT training tokens/s and peak RSS",
              how + "batch " + std::to_string(a.batch) + ", AdamW, uniform random tokens (vocabulary 65); tokens/s from the "
              "median step after " + std::to_string(a.warmup) + " warm-up steps; median [min-max] of " +
              std::to_string(a.repeats) + " processes (one per row and repeat, so peak RSS is the row's own); " +
              (have_ref ? "ratio = ours / PyTorch (bench/torch_gpt.py, same thread count; 2 threads = 2 OpenMP x 2 "
                          "OpenBLAS threads, passive waiting)"
                        : "no PyTorch figures (see bench/run.sh)"));
  std::vector<std::string> head{"preset", "variant", "threads", "parameters", "ours tok/s", "ours peak RSS MB"};
  if (have_ref) head.insert(head.end(), {"PyTorch tok/s", "PyTorch peak RSS MB", "ratio"});
  std::printf("%s\n", markdown_table(head, table).c_str());
  if (have_ref && threads.size() > 1) {  // each at its best thread setting, as the goal counts it
    std::vector<std::vector<std::string>> best;
    for (const auto& p : presets)
      for (const auto& v : variants) {
        int to = threads[0], tb = threads[0];
        for (int t : threads) {
          if (stats(ours[{p, v, t}].tps).median > stats(ours[{p, v, to}].tps).median) to = t;
          if (stats(ref[{p, v, t}].tps).median > stats(ref[{p, v, tb}].tps).median) tb = t;
        }
        const Stats o = stats(ours[{p, v, to}].tps), b = stats(ref[{p, v, tb}].tps);
        best.push_back({p, v, fixed(o.median, 0) + " (" + std::to_string(to) + "T)",
                        b.n ? fixed(b.median, 0) + " (" + std::to_string(tb) + "T)" : "-", ratio(o, b)});
      }
    std::printf("Each at its best thread count:\n\n%s\n",
                markdown_table({"preset", "variant", "ours tok/s", "PyTorch tok/s", "ratio"}, best).c_str());
  }
}

// ---- decode -------------------------------------------------------------------------------------------------
struct DecodeArgs {
  CommonFlags common;
  std::string preset = "small", variants = "qkv,kv,qk,single,gqa:2,mqa";
  int64_t context = 128;
  int repeats = 3;
  bool quick = false;
};

void run_decode(DecodeArgs a) {
  if (a.common.threads == 0) a.common.threads = 1;  // one token at a time: too little work to share
  apply_common_flags(a.common);
  if (a.quick) a.repeats = std::min(a.repeats, 1);
  check(a.repeats >= 1, "bench decode: --repeats must be >= 1");
  check(a.context >= 2 && a.context <= 4096, "bench decode: --context must be in 2..4096, got ", a.context);
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  bool all_match = true;
  for (const std::string& v : split(a.variants, ',')) {
    ModelConfig cfg = gpt_preset(a.preset);
    cfg.vocab_size = 65;
    cfg.context = a.context;
    cfg.variant = parse_variant(v);
    cfg.resolve();
    GPT model(cfg, 1234);
    // One prompt token, then generate until the sequence fills the context: every token attends to all before it.
    const std::vector<int64_t> prompt{1};
    SampleOptions o;
    o.max_new_tokens = a.context - 1;
    o.temperature = 0.0;
    std::vector<double> with, without;
    int64_t cache_bytes = 0;
    for (int r = 0; r < a.repeats; ++r) {
      o.use_cache = true;
      SampleResult c = sample(model, prompt, o);
      with.push_back(double(c.tokens.size()) / c.seconds);
      cache_bytes = c.cache_bytes;
      o.use_cache = false;
      SampleResult n = sample(model, prompt, o);
      without.push_back(double(n.tokens.size()) / n.seconds);
      check(n.tokens == c.tokens, "bench decode: ", v, " gives different tokens with and without the cache");
    }
    // The cache holds every position fed to the model: the prompt and all new tokens but the last.
    const int64_t positions = int64_t(prompt.size()) + o.max_new_tokens - 1;
    const int64_t per_token = cache_bytes / positions;
    const int64_t formula = kv_bytes_per_token(cfg, sizeof(float));
    const bool match = per_token * positions == cache_bytes && per_token == formula;
    all_match = all_match && match;
    const Stats w = stats(with), n = stats(without);
    rows.push_back({{"variant", cfg.variant.id()}, {"paper_name", cfg.variant.paper_name()},
                    {"tokens_per_s_cache", to_json(w)}, {"tokens_per_s_no_cache", to_json(n)},
                    {"speedup", w.median / n.median}, {"cache_bytes_per_token", per_token},
                    {"formula_bytes_per_token", formula}, {"matches_formula", match}});
    table.push_back({cfg.variant.id(), cfg.variant.paper_name(), cell(w, 0), cell(n, 0), fixed(w.median / n.median, 1),
                     with_commas(per_token), with_commas(formula), match ? "yes" : "NO"});
  }
  if (a.common.json) {
    std::printf("%s\n", ordered_json{{"section", "decode"}, {"preset", a.preset}, {"context", a.context},
                                     {"threads", a.common.threads}, {"repeats", a.repeats}, {"rows", rows}}
                            .dump(2)
                            .c_str());
  } else {
    print_title("decode: generation tokens/s with and without the KV cache",
                "preset " + a.preset + ", batch 1, one prompt token then " + std::to_string(a.context - 1) +
                    " new tokens (the sequence fills context " + std::to_string(a.context) + "), greedy, " +
                    std::to_string(a.common.threads) + " thread(s); median [min-max] of " + std::to_string(a.repeats) +
                    " runs; formula = layers x cached tensors (2, or 1 when V is K) x KV heads x head dim x 4 bytes "
                    "(as qkvlab cache)");
    std::printf("%s\n", markdown_table({"variant", "paper name", "tok/s with cache", "tok/s without", "speed-up",
                                        "cache B/token", "formula B/token", "matches"},
                                       table)
                            .c_str());
  }
  check(all_match, "bench decode: the KV cache holds a different number of bytes than the formula");
}

// ---- scaling ------------------------------------------------------------------------------------------------
struct ScalingArgs {
  CommonFlags common;
  std::string variants = "qkv,kv", out;
  std::string contexts = "64,128,256,512", widths = "64,128,256,512";
  int64_t batch = 8, layers = 2, heads = 4, base_context = 128, base_width = 128;
  int steps = 3, warmup = 1;
  bool quick = false;
};

std::vector<int64_t> int_list(const std::string& s, const char* flag) {
  std::vector<int64_t> out;
  for (const auto& item : split(s, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    check(*end == '\0' && v > 0 && v <= 8192, "bench scaling: ", flag, " expects positive whole numbers, got '", item,
          "'");
    out.push_back(v);
  }
  check(!out.empty(), "bench scaling: ", flag, " is empty");
  return out;
}

void run_scaling(ScalingArgs a) {
  apply_common_flags(a.common);
  if (a.quick) a.steps = 1, a.warmup = 1, a.contexts = "64,128", a.widths = "64,128";
  check(a.steps >= 1 && a.warmup >= 0, "bench scaling: --steps must be >= 1 and --warmup >= 0");
  const auto contexts = int_list(a.contexts, "--contexts"), widths = int_list(a.widths, "--widths");
  const std::vector<std::string> variants = split(a.variants, ',');
  check(!variants.empty(), "bench scaling: --variants is empty");
  struct Point {
    std::string sweep;
    int64_t context, width;
  };
  std::vector<Point> points;
  for (int64_t c : contexts) points.push_back({"context", c, a.base_width});
  for (int64_t w : widths) points.push_back({"width", a.base_context, w});
  std::map<std::pair<size_t, std::string>, double> ms;  // (point, variant) -> median step ms
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& pt = points[i];
    std::vector<std::string> row{pt.sweep, std::to_string(pt.context), std::to_string(pt.width)};
    ordered_json j{{"sweep", pt.sweep}, {"context", pt.context}, {"d_model", pt.width}};
    for (const auto& v : variants) {
      ModelConfig cfg = gpt_preset("small");
      cfg.vocab_size = 65, cfg.context = pt.context, cfg.d_model = pt.width, cfg.n_layers = a.layers;
      cfg.n_heads = a.heads;
      cfg.variant = parse_variant(v);
      cfg.resolve();
      const TrainCell c = train_cell(cfg, a.batch, a.warmup, a.steps, false);
      ms[{i, v}] = 1e3 * stats(c.step_s).median;
      row.push_back(fixed(ms[{i, v}], 1));
      j["step_ms"][v] = ms[{i, v}];
      j["params"][v] = c.params;
    }
    if (variants.size() >= 2) row.push_back(fixed(ms[{i, variants[1]}] / ms[{i, variants[0]}], 3));
    rows.push_back(j);
    table.push_back(row);
  }
  if (!a.out.empty()) {
    make_dirs(a.out);
    for (const std::string sweep : {"context", "width"}) {
      std::vector<plot::Series> series;
      for (const auto& v : variants) {
        plot::Series s{parse_variant(v).paper_name(), {}, {}};
        for (size_t i = 0; i < points.size(); ++i)
          if (points[i].sweep == sweep)
            s.x.push_back(double(sweep == "context" ? points[i].context : points[i].width)), s.y.push_back(ms[{i, v}]);
        series.push_back(s);
      }
      plot::ChartOptions opt;
      opt.title = "training step time vs " + std::string(sweep == "context" ? "context" : "width (d_model)") +
                  (sweep == "context" ? " (d " + std::to_string(a.base_width) + ")"
                                      : " (context " + std::to_string(a.base_context) + ")") +
                  ", batch " + std::to_string(a.batch) + ", " + std::to_string(a.layers) + " layers";
      opt.x_label = sweep == "context" ? "context (tokens)" : "d_model";
      opt.y_label = "ms per step";
      opt.log_y = true;
      plot::write_line_chart(a.out + "/scaling_" + sweep + ".png", series, opt);
    }
  }
  if (a.common.json) {
    std::printf("%s\n", ordered_json{{"section", "scaling"}, {"batch", a.batch}, {"layers", a.layers},
                                     {"heads", a.heads}, {"threads", num_threads()}, {"rows", rows}}
                            .dump(2)
                            .c_str());
    return;
  }
  print_title("scaling: training step time (ms) vs context and width",
              "GPT, batch " + std::to_string(a.batch) + ", " + std::to_string(a.layers) + " layers, " +
                  std::to_string(a.heads) + " heads, " + std::to_string(num_threads()) + " thread(s); median of " +
                  std::to_string(a.steps) + " steps after " + std::to_string(a.warmup) + " warm-up" +
                  (a.out.empty() ? "" : "; charts: " + a.out + "/scaling_context.png, scaling_width.png"));
  std::vector<std::string> head{"sweep", "context", "d_model"};
  for (const auto& v : variants) head.push_back(parse_variant(v).paper_name() + " ms");
  if (variants.size() >= 2) head.push_back(variants[1] + " / " + variants[0]);
  std::printf("%s\n", markdown_table(head, table).c_str());
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Performance figures: matmul GFLOP/s, training and decoding tokens/s "
                                                "(make bench adds OpenBLAS and PyTorch beside them)");
  bench->require_subcommand(1);

  auto m = std::make_shared<MatmulArgs>();
  CLI::App* mc = bench->add_subcommand("matmul", "GFLOP/s of the GEMM on square, GPT-layer and attention shapes (1 thread and all cores, "
                                                  "unless --threads)");
  mc->add_option("--shapes", m->shapes, "all, shape names (sq256, s_qkv_fwd, s_attn_av, ...) or MxKxN[xBATCH]")
      ->default_val("all");
  mc->add_option("--repeats", m->repeats, "independent measurements per row (median [min-max])")->default_val(3);
  mc->add_option("--samples", m->samples, "timed samples per measurement (the best counts)")->default_val(9);
  mc->add_option("--openblas", m->openblas, "bench/sgemm_openblas.c built with -lopenblas, for the ratio column");
  mc->add_flag("--quick", m->quick, "1 repeat, 5 shorter samples");
  add_common_flags(mc, m->common);
  mc->callback([m] { run_matmul(*m); });

  auto t = std::make_shared<TrainArgs>();
  CLI::App* tc = bench->add_subcommand("train", "GPT training tokens/s and peak RSS, one process per row (1 thread and all "
                                                 "cores, unless --threads)");
  tc->add_option("--presets", t->presets, "comma list of GPT presets: tiny, small")->default_val("tiny,small");
  tc->add_option("--variants", t->variants, "comma list of variants")->default_val("qkv,kv,single");
  tc->add_option("--repeats", t->repeats, "processes per row (median [min-max])")->default_val(3);
  tc->add_option("--steps", t->steps, "timed steps per process (0: tiny 30, small 8)")->default_val(0);
  tc->add_option("--warmup", t->warmup, "untimed steps first")->default_val(2);
  tc->add_option("--batch", t->batch, "sequences per step")->default_val(32);
  tc->add_option("--torch", t->torch, "command running bench/torch_gpt.py (/usr/bin/python3 bench/torch_gpt.py), for "
                                      "the ratio column");
  tc->add_flag("--quick", t->quick, "1 repeat, fewer steps");
  tc->add_flag("--recompute", t->recompute, "ours recomputes block activations in backward (train --recompute)");
  tc->add_flag("--worker", t->worker, "measure one row in this process (used by bench train itself)")
      ->group("");  // hidden
  add_common_flags(tc, t->common);
  tc->callback([t] { run_train(*t); });

  auto d = std::make_shared<DecodeArgs>();
  CLI::App* dc = bench->add_subcommand("decode", "Generation tokens/s with and without the KV cache, cache bytes (1 thread "
                                                  "unless --threads)");
  dc->add_option("--preset", d->preset, "GPT preset: tiny or small")->default_val("small");
  dc->add_option("--variants", d->variants, "comma list of variants")->default_val("qkv,kv,qk,single,gqa:2,mqa");
  dc->add_option("--context", d->context, "tokens in the sequence at the end (prompt + generated)")->default_val(128);
  dc->add_option("--repeats", d->repeats, "runs per row (median [min-max])")->default_val(3);
  dc->add_flag("--quick", d->quick, "1 repeat");
  add_common_flags(dc, d->common);
  dc->callback([d] { run_decode(*d); });

  auto s = std::make_shared<ScalingArgs>();
  CLI::App* sc = bench->add_subcommand("scaling", "Training step time vs context and vs width, QKV vs Q-K=V");
  sc->add_option("--variants", s->variants, "comma list of variants (the ratio column: second / first)")
      ->default_val("qkv,kv");
  sc->add_option("--contexts", s->contexts, "contexts of the context sweep (width 128)")->default_val("64,128,256,512");
  sc->add_option("--widths", s->widths, "d_model values of the width sweep (context 128)")->default_val("64,128,256,512");
  sc->add_option("--batch", s->batch, "sequences per step")->default_val(8);
  sc->add_option("--steps", s->steps, "timed steps per point (median)")->default_val(3);
  sc->add_option("--out", s->out, "folder for the charts scaling_context.png and scaling_width.png");
  sc->add_flag("--quick", s->quick, "two points per sweep, one timed step");
  add_common_flags(sc, s->common);
  sc->callback([s] { run_scaling(*s); });
}

}  // namespace qkvlab::app
