// bench train: GPT training tokens/s and peak RSS, each (preset, variant, threads) row in a fresh process of qkvlab
// (`qkvlab bench train --worker`) so that its peak RSS is its own; when given, the same work in PyTorch
// (bench/torch_gpt.py) in its own process, alternating with ours row by row.
// The work, as bench/torch_gpt.py: a GPT preset on uniform random tokens (vocabulary 65), AdamW (lr 1e-3, weight
// decay 0.01); tokens/s = batch x context / median step time after warm-up.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "models/config.h"

namespace qkvlab::bench {

// A GPT preset (models/config.h) with vocabulary 65 and the given variant; bad names are errors.
ModelConfig bench_model(const std::string& preset, const std::string& variant);

// Training steps of one model in this process, at the current thread count.
struct TrainCell {
  std::vector<double> step_s;  // seconds of each timed step
  double first_loss = 0, last_loss = 0;
  int64_t params = 0, tokens = 0;  // tokens per step
};
TrainCell train_cell(const ModelConfig& cfg, int64_t batch, int warmup, int steps, bool recompute);

struct TrainOptions {
  std::vector<std::string> presets, variants;
  std::vector<int> threads;
  std::string torch;  // the command running bench/torch_gpt.py, or "" for ours alone
  int repeats = 3, steps = 0, warmup = 2;  // steps 0: the preset's default
  int64_t batch = 32;
  bool quick = false, recompute = false;
};
// Timed steps per process: o.steps, else tiny 30 and small 8 (10 and 3 with --quick).
int steps_for(const TrainOptions& o, const std::string& preset);

// The worker's side: one row (the first preset and variant) measured in this process, as the line the parent reads
// from its stdout: "RESULT " and one line of JSON.
std::string train_worker_result(const TrainOptions& o);

struct TrainRow {
  std::vector<double> tokens_per_s, peak_rss_mb;  // one per repeat (process)
  int64_t params = 0;
};
using TrainKey = std::tuple<std::string, std::string, int>;  // (preset, variant, threads)
struct TrainResult {
  std::map<TrainKey, TrainRow> ours, torch;  // torch: only the variants bench/torch_gpt.py has
};
// The parent's side: every row and repeat in its own process (this program with --worker, and the yardstick).
TrainResult measure_train(const TrainOptions& o);

}  // namespace qkvlab::bench
