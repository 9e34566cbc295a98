#include "bench/train.h"

#include <nlohmann/json.hpp>

#include "bench/harness.h"
#include "models/transformer.h"
#include "nn/optim.h"
#include "tensor/array.h"
#include "tensor/platform.h"

namespace qkvlab::bench {

using nlohmann::ordered_json;

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

int steps_for(const TrainOptions& o, const std::string& preset) {
  if (o.steps > 0) return o.steps;
  return preset == "tiny" ? (o.quick ? 10 : 30) : (o.quick ? 3 : 8);
}

std::string train_worker_result(const TrainOptions& o) {
  const ModelConfig cfg = bench_model(o.presets.at(0), o.variants.at(0));
  const TrainCell c = train_cell(cfg, o.batch, o.warmup, steps_for(o, o.presets[0]), o.recompute);
  const ordered_json j{{"step_s", c.step_s}, {"tokens", c.tokens}, {"params", c.params}, {"peak_rss_mb", peak_rss_megabytes()},
                       {"tensor_peak_mb", double(Storage::peak_bytes()) / (1 << 20)},
                       {"loss_first", c.first_loss}, {"loss_last", c.last_loss}};
  return "RESULT " + j.dump();
}

namespace {
// The variants bench/torch_gpt.py has (no GQA, no (X)+ bias): "" for the others.
std::string torch_variant(const std::string& v) {
  return v == "qkv" || v == "kv" || v == "qk" || v == "single" ? v : "";
}
}  // namespace

TrainResult measure_train(const TrainOptions& o) {
  const std::string exe = self_exe();
  TrainResult res;
  for (int r = 0; r < o.repeats; ++r)
    for (const auto& p : o.presets)
      for (const auto& v : o.variants)
        for (int t : o.threads) {
          const int steps = steps_for(o, p);
          if (!o.torch.empty() && !torch_variant(v).empty()) {
            TempFile out;
            run_child(o.torch + " --configs " + p + " --variants " + torch_variant(v) + " --threads " +
                          std::to_string(t) + " --repeats 1 --steps " + std::to_string(steps) + " --warmup " +
                          std::to_string(o.warmup) + " --json " + shell_quote(out.path),
                      "the PyTorch yardstick");
            const auto j = ordered_json::parse(out.read());
            std::vector<double> s = j["train_s"];
            TrainRow& row = res.torch[{p, v, t}];
            row.tokens_per_s.push_back(j["tokens"].get<double>() / stats(s).median);
            row.peak_rss_mb.push_back(j["peak_rss_kb"].get<double>() / 1024.0);
            row.params = j["n_params"];
          }
          const std::string out = run_child(shell_quote(exe) + " bench train --worker --presets " + p + " --variants " +
                                                v + " --threads " + std::to_string(t) + " --steps " +
                                                std::to_string(steps) + " --warmup " + std::to_string(o.warmup) +
                                                " --batch " + std::to_string(o.batch) +
                                                (o.recompute ? " --recompute" : ""),
                                            "a training row (" + p + ", " + v + ")");
          const auto at = out.rfind("RESULT ");
          check(at != std::string::npos, "bench train: the worker printed no result");
          const auto j = ordered_json::parse(out.substr(at + 7));
          std::vector<double> s = j["step_s"];
          TrainRow& row = res.ours[{p, v, t}];
          row.tokens_per_s.push_back(j["tokens"].get<double>() / stats(s).median);
          row.peak_rss_mb.push_back(j["peak_rss_mb"]);
          row.params = j["params"];
        }
  return res;
}

}  // namespace qkvlab::bench
