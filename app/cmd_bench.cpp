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
// This file is the command line: flags, tables, JSON and messages; the measuring is bench/ (bench/harness.h).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <nlohmann/json.hpp>

#include "app/common.h"
#include "bench/decode.h"
#include "bench/harness.h"
#include "bench/matmul.h"
#include "bench/scaling.h"
#include "bench/train.h"
#include "plot/plot.h"
#include "tensor/array.h"
#include "tensor/gemm.h"
#include "tensor/parallel.h"

namespace qkvlab::app {

namespace {
using bench::split;
using bench::Stats;
using bench::stats;
using nlohmann::ordered_json;

// ---- presenting measurements ----------------------------------------------------------------------------------
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
ordered_json ratio_json(const Stats& ours, const Stats& ref) {
  return ours.n && ref.n ? ordered_json(ours.median / ref.median) : ordered_json(nullptr);
}

void print_title(const std::string& title, const std::string& note) {
  std::printf("## %s\n\n%s%s", title.c_str(), note.c_str(), note.empty() ? "" : "\n\n");
}

// ---- matmul -------------------------------------------------------------------------------------------------
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
  const std::vector<bench::MatShape> shapes = bench::pick_shapes(a.shapes);
  const std::vector<int> threads = bench::thread_counts(a.common.threads);
  bench::MatmulResult m = bench::measure_matmul({shapes, threads, a.openblas, a.repeats, a.samples, a.min_ms});
  const bool have_ref = !m.openblas.empty();
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& s : shapes)
    for (int t : threads) {
      const Stats o = stats(m.ours[{s.name, t}]), b = stats(m.openblas[{s.name, t}]);
      const double err = m.max_rel_err[s.name];
      const std::string op = std::string(s.ta ? "T" : "N") + (s.tb ? "T" : "N");
      rows.push_back({{"shape", s.name}, {"M", s.M}, {"K", s.K}, {"N", s.N}, {"batch", s.batch}, {"op", op},
                      {"threads", t}, {"gflops", to_json(o)}, {"openblas_gflops", to_json(b)},
                      {"ratio", ratio_json(o, b)}, {"max_rel_err", err}, {"ok", err < 1e-5}});
      std::vector<std::string> row{s.name, std::to_string(s.M) + "x" + std::to_string(s.K) + "x" + std::to_string(s.N),
                                   std::to_string(s.batch), op, std::to_string(t), cell(o, 1)};
      if (have_ref) row.push_back(cell(b, 1)), row.push_back(ratio(o, b));
      row.push_back(err < 1e-5 ? "ok" : "WRONG");
      table.push_back(row);
    }
  if (a.common.json) {
    std::printf("%s\n", ordered_json{{"section", "matmul"}, {"kernel", gemm_kernel_name()}, {"repeats", a.repeats},
                                     {"rows", rows}}.dump(2).c_str());
  } else {
    print_title("matmul: GFLOP/s of qkvlab::gemm (float32)",
                std::string("micro-kernel: ") + gemm_kernel_name() + "; median [min-max] of " +
                    std::to_string(a.repeats) + " repeats, each the best of " +
                    std::to_string(a.samples) + " samples; op: N = as stored, T = transposed view; " +
                    (have_ref ? "ratio = ours / OpenBLAS cblas_sgemm (one call per batch entry, own process)"
                              : "no OpenBLAS figures (see bench/run.sh)"));
    std::vector<std::string> head{"shape", "M x K x N", "batch", "op", "threads", "ours GF/s"};
    if (have_ref) head.push_back("OpenBLAS GF/s"), head.push_back("ratio");
    head.push_back("check");
    std::printf("%s\n", markdown_table(head, table).c_str());
  }
  for (const auto& [name, e] : m.max_rel_err)
    check(e < 1e-5, "bench matmul: ", name, " gave wrong results (relative error ", e, ")");
}

// ---- train --------------------------------------------------------------------------------------------------
struct TrainArgs {
  CommonFlags common;
  std::string presets = "tiny,small", variants = "qkv,kv,single", torch;
  int repeats = 3, steps = 0, warmup = 2;
  int64_t batch = 32;
  bool quick = false, worker = false, recompute = false;
};

void run_train(TrainArgs a) {
  apply_common_flags(a.common);
  if (a.quick) a.repeats = std::min(a.repeats, 1);
  check(a.repeats >= 1 && a.warmup >= 0 && a.steps >= 0 && a.batch >= 1,
        "bench train: --repeats and --batch must be >= 1, --steps and --warmup >= 0");
  const bench::TrainOptions o{split(a.presets, ','), split(a.variants, ','), bench::thread_counts(a.common.threads),
                              a.torch, a.repeats, a.steps, a.warmup, a.batch, a.quick, a.recompute};
  const std::vector<std::string>&presets = o.presets, &variants = o.variants;
  const std::vector<int>& threads = o.threads;
  check(!presets.empty() && !variants.empty(), "bench train: --presets and --variants must not be empty");
  for (const auto& p : presets)
    for (const auto& v : variants) bench::bench_model(p, v);  // bad names fail here, before any work
  if (a.worker) {  // one row in this process: the parent reads the RESULT line
    std::printf("%s\n", bench::train_worker_result(o).c_str());
    return;
  }
  bench::TrainResult m = bench::measure_train(o);
  const bool have_ref = !m.torch.empty();
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& p : presets)
    for (const auto& v : variants)
      for (int t : threads) {
        const bench::TrainRow &ours = m.ours[{p, v, t}], &ref = m.torch[{p, v, t}];
        const Stats ot = stats(ours.tokens_per_s), orss = stats(ours.peak_rss_mb), bt = stats(ref.tokens_per_s),
                    brss = stats(ref.peak_rss_mb);
        rows.push_back({{"preset", p}, {"variant", v}, {"threads", t}, {"params", ours.params},
                        {"tokens_per_s", to_json(ot)}, {"peak_rss_mb", to_json(orss)},
                        {"torch_tokens_per_s", to_json(bt)}, {"torch_peak_rss_mb", to_json(brss)},
                        {"ratio", ratio_json(ot, bt)}});
        std::vector<std::string> row{p, v, std::to_string(t), with_commas(ours.params), cell(ot, 0), cell(orss, 0)};
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
          if (stats(m.ours[{p, v, t}].tokens_per_s).median > stats(m.ours[{p, v, to}].tokens_per_s).median) to = t;
          if (stats(m.torch[{p, v, t}].tokens_per_s).median > stats(m.torch[{p, v, tb}].tokens_per_s).median) tb = t;
        }
        const Stats o = stats(m.ours[{p, v, to}].tokens_per_s), b = stats(m.torch[{p, v, tb}].tokens_per_s);
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
    const bench::DecodeRow d = bench::measure_decode(a.preset, v, a.context, a.repeats);
    const VariantSpec& spec = d.cfg.variant;
    all_match = all_match && d.matches_formula;
    const Stats w = stats(d.tokens_per_s_cache), n = stats(d.tokens_per_s_no_cache);
    rows.push_back({{"variant", spec.id()}, {"paper_name", spec.paper_name()},
                    {"tokens_per_s_cache", to_json(w)}, {"tokens_per_s_no_cache", to_json(n)},
                    {"speedup", w.median / n.median}, {"cache_bytes_per_token", d.cache_bytes_per_token},
                    {"formula_bytes_per_token", d.formula_bytes_per_token}, {"matches_formula", d.matches_formula}});
    table.push_back({spec.id(), spec.paper_name(), cell(w, 0), cell(n, 0), fixed(w.median / n.median, 1),
                     with_commas(d.cache_bytes_per_token), with_commas(d.formula_bytes_per_token),
                     d.matches_formula ? "yes" : "NO"});
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

// scaling_context.png and scaling_width.png: ms per step against the sweep's size, a line per variant.
void write_scaling_charts(const ScalingArgs& a, const bench::ScalingOptions& o,
                          const std::vector<bench::ScalingPoint>& points) {
  make_dirs(a.out);
  for (const std::string sweep : {"context", "width"}) {
    std::vector<plot::Series> series;
    for (size_t k = 0; k < o.variants.size(); ++k) {
      plot::Series s{parse_variant(o.variants[k]).paper_name(), {}, {}};
      for (const auto& pt : points)
        if (pt.sweep == sweep)
          s.x.push_back(double(sweep == "context" ? pt.context : pt.width)), s.y.push_back(pt.step_ms[k]);
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

void run_scaling(ScalingArgs a) {
  apply_common_flags(a.common);
  if (a.quick) a.steps = 1, a.warmup = 1, a.contexts = "64,128", a.widths = "64,128";
  check(a.steps >= 1 && a.warmup >= 0, "bench scaling: --steps must be >= 1 and --warmup >= 0");
  bench::ScalingOptions o;
  o.contexts = int_list(a.contexts, "--contexts"), o.widths = int_list(a.widths, "--widths");
  o.variants = split(a.variants, ',');
  check(!o.variants.empty(), "bench scaling: --variants is empty");
  o.batch = a.batch, o.layers = a.layers, o.heads = a.heads, o.base_context = a.base_context;
  o.base_width = a.base_width, o.steps = a.steps, o.warmup = a.warmup;
  const std::vector<bench::ScalingPoint> points = bench::measure_scaling(o);
  const std::vector<std::string>& variants = o.variants;
  ordered_json rows = ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& pt : points) {
    std::vector<std::string> row{pt.sweep, std::to_string(pt.context), std::to_string(pt.width)};
    ordered_json j{{"sweep", pt.sweep}, {"context", pt.context}, {"d_model", pt.width}};
    for (size_t k = 0; k < variants.size(); ++k) {
      row.push_back(fixed(pt.step_ms[k], 1));
      j["step_ms"][variants[k]] = pt.step_ms[k];
      j["params"][variants[k]] = pt.params[k];
    }
    if (variants.size() >= 2) row.push_back(fixed(pt.step_ms[1] / pt.step_ms[0], 3));
    rows.push_back(j);
    table.push_back(row);
  }
  if (!a.out.empty()) write_scaling_charts(a, o, points);
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
