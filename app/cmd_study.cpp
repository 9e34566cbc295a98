// qkvlab study: the paper's comparison at laptop scale. Trains every variant of a set with the same seed, data and
// budget, one after another, and reports them side by side: parameters, KV cache per token, the task's metric,
// train time. Writes results.json, results.csv, each variant's run directory (checkpoint, metrics.jsonl,
// attention maps) and loss_curves.png under --out.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/attention_maps.h"
#include "app/model_flags.h"
#include "plot/plot.h"
#include "app/report.h"
#include "models/run_dir.h"

namespace qkvlab::app {

namespace {
struct StudyArgs {
  CommonFlags common;
  ModelFlags model;
  TrainFlags train;
  std::string variants = "paper-synthetic";
  std::string out = "runs/study";
  int64_t seeds = 1;
  bool no_maps = false;
  bool resume = false, overwrite = false;
  std::string inits;  // comma list (torch,gpt2): one study per init, verdicts side by side
};

struct VariantResult {
  VariantSpec spec;
  ModelConfig cfg;
  int64_t params = 0, kv_bytes = 0;
  std::vector<double> metric, loss, seconds;  // one per seed
  std::vector<std::pair<int64_t, double>> curve;  // first seed's training loss
  std::vector<HeadMap> maps;
  std::vector<std::vector<double>> temps;  // (X)+: sum w per layer, one list per seed
  std::vector<double> mean_temps() const {  // per layer, mean over seeds
    std::vector<double> m(temps.empty() ? 0 : temps[0].size(), 0.0);
    for (auto& t : temps)
      for (size_t l = 0; l < m.size() && l < t.size(); ++l) m[l] += t[l] / double(temps.size());
    return m;
  }
};

namespace fs = std::filesystem;

// The run directories below a study's --out (variant folders, and their seedN folders).
std::vector<std::string> study_runs(const std::string& out) {
  std::vector<std::string> runs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    if (!e.is_directory(ec)) continue;
    if (inspect_run(e.path().string()).holds_run) runs.push_back(e.path().string());
    for (const auto& f : fs::directory_iterator(e.path(), ec))  // --seeds N: variant/seedS
      if (f.is_directory(ec) && f.path().filename().string().rfind("seed", 0) == 0 &&
          inspect_run(f.path().string()).holds_run)
        runs.push_back(f.path().string());
  }
  std::sort(runs.begin(), runs.end());
  return runs;
}
const char* const kStudyFiles[] = {"results.json", "results.csv", "loss_curves.png", "report.html"};

// Refuses an --out that holds a study unless --resume or --overwrite (the rule of `train`, models/run_dir.h).
void check_study_dir(const std::string& out, RunMode mode) {
  if (mode == RunMode::Resume) {
    check(fs::is_directory(out), "study --resume: no study in ", out, " to continue; study without --resume first");
    return;
  }
  if (mode != RunMode::New || !fs::is_directory(out)) return;
  const std::vector<std::string> runs = study_runs(out);
  int64_t last = -1;
  for (const auto& r : runs) last = std::max(last, inspect_run(r).step);
  bool results = false;
  for (const char* f : kStudyFiles) results = results || fs::exists(fs::path(out) / f);
  if (runs.empty() && !results) return;
  fail("study: ", out, " already holds a study (", runs.size(), " run", runs.size() == 1 ? "" : "s",
       last >= 0 ? ", checkpoints up to step " + std::to_string(last) : std::string(", no checkpoint yet"),
       results ? ", results.json" : "", "); continue it with --resume, or replace it with --overwrite");
}

// --overwrite: the old study's files go, each run under its own lock.
void remove_study(const std::string& out) {
  std::error_code ec;
  for (const char* f : kStudyFiles) fs::remove(fs::path(out) / f, ec);
  for (const std::string& r : study_runs(out)) {
    auto lock = claim_run_dir(r, RunMode::Overwrite, "study");
    fs::remove_all(fs::path(r) / "attention", ec);
    fs::remove(fs::path(r) / ".lock", ec);
    fs::remove(r, ec);  // only when nothing else is in it
    fs::remove(fs::path(r).parent_path(), ec);  // a variant folder left empty by its seeds
  }
}

// (step, loss) of the logged training losses up to `upto`, and the last elapsed_s, from a run's metrics.jsonl.
std::vector<std::pair<int64_t, double>> logged_losses(const std::string& dir, int64_t upto, double* elapsed) {
  std::vector<std::pair<int64_t, double>> out;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    try {
      auto j = nlohmann::json::parse(line);
      if (!j.contains("loss") || j["step"].get<int64_t>() > upto) continue;
      out.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
      if (elapsed && j.contains("elapsed_s")) *elapsed = j["elapsed_s"].get<double>();
    } catch (...) {
    }
  }
  return out;
}

std::string temps_str(const std::vector<double>& t) {
  std::string out;
  for (double x : t) out += (out.empty() ? "" : ", ") + std::string(x >= 0 ? "+" : "") + fixed(x, 2);
  return out.empty() ? "-" : out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}
double stdev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  double m = mean(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

// One study (every variant, every seed) at one init, written under a.out; returns the variants' results.
std::vector<VariantResult> study_one(StudyArgs& a) {
  const bool lm = a.model.task == "lm";
  // The heads decide the paper-lm set's G, so resolve the model dims before the set.
  std::unique_ptr<TaskData> probe = make_task(task_options(a.model, a.common.seed));
  ModelConfig base = build_config(a.model, parse_variant("qkv"), *probe);
  std::vector<VariantSpec> specs = variant_set(a.variants, base.n_heads);
  check(!specs.empty(), "study: no variants in '", a.variants, "'");
  check(!(a.resume && a.overwrite), "study: give --resume (continue the study) or --overwrite (replace it), not both");
  const RunMode mode = a.resume ? RunMode::Resume : a.overwrite ? RunMode::Overwrite : RunMode::New;
  check_study_dir(a.out, mode);  // before anything is written
  make_dirs(a.out);
  std::shared_ptr<RunLock> study_lock = lock_run_dir(a.out);  // one study at a time writes --out
  check_study_dir(a.out, mode);  // again under the lock
  if (mode == RunMode::Overwrite) remove_study(a.out);
  const std::string metric_name = lm ? "val perplexity" : "accuracy";
  const TrainOptions recipe = train_options(a.train, a.model, *probe, a.common.seed);

  std::vector<VariantResult> results;
  // The reduction is always against plain QKV at the same size (K and V for every head), even when the set omits it.
  ModelConfig plain_qkv = base;
  plain_qkv.variant = VariantSpec{};  // qkv: no head sharing, no bias
  const int64_t qkv_bytes = kv_bytes_per_token(plain_qkv, 4);
  install_interrupt_handler();  // Ctrl-C: the running variant saves its checkpoint, then the study stops
  for (size_t vi = 0; vi < specs.size(); ++vi) {
    VariantResult r;
    r.spec = specs[vi];
    for (int64_t s = 0; s < a.seeds; ++s) {
      uint64_t seed = a.common.seed + uint64_t(s);
      std::unique_ptr<TaskData> data = make_task(task_options(a.model, seed));
      r.cfg = build_config(a.model, r.spec, *data);
      TrainOptions o = train_options(a.train, a.model, *data, seed);
      r.cfg.recipe = recipe_json(o);
      o.out_dir = a.out + "/" + variant_dir_name(r.spec.id()) + (a.seeds > 1 ? "/seed" + std::to_string(seed) : "");
      make_dirs(o.out_dir);
      char label[96];
      std::snprintf(label, sizeof label, "[%zu/%zu] %s%s", vi + 1, specs.size(), r.spec.paper_name().c_str(),
                    a.seeds > 1 ? (" seed " + std::to_string(seed)).c_str() : "");
      o.label = label;
      auto model = make_model(r.cfg, seed);
      // --resume: a finished run is evaluated again from its checkpoint, an unfinished one continues.
      RunInfo ri = inspect_run(o.out_dir);
      if (a.resume) check_run_dir(o.out_dir, ri.holds_run ? RunMode::Resume : RunMode::New, "study");
      check(!ri.checkpoint || ri.step <= o.steps || !a.resume, "study --resume: ", o.out_dir, " did ", ri.step,
            " steps, more than the ", o.steps, " asked for");
      TrainResult t;
      std::vector<std::pair<int64_t, double>> earlier;  // losses logged before this process (a resumed run)
      if (a.resume && ri.checkpoint && ri.step == o.steps) {
        auto saved = load_model(ri.model);
        check(saved->config().to_json() == r.cfg.to_json(), "study --resume: ", o.out_dir,
              " holds a different model from the one asked for (", saved->config().variant.id(), ", d ",
              saved->config().d_model, ")");
        model = std::move(saved);
        model->eval();
        t.steps = ri.step;
        t.eval = data->evaluate(*model, o.eval_examples);
        earlier = logged_losses(o.out_dir, ri.step, &t.seconds);
        if (!a.common.json) std::fprintf(stderr, "%s  done before (step %lld): evaluated again\n", label,
                                         (long long)ri.step);
      } else {
        o.resume = a.resume && ri.checkpoint;
        if (o.resume) earlier = logged_losses(o.out_dir, ri.step, nullptr);
        t = train_model(*model, *data, o);
      }
      t.losses.insert(t.losses.begin(), earlier.begin(), earlier.end());
      check(!t.interrupted, "study: interrupted during ", r.spec.id(), "; finished runs are in ", a.out,
            " (continue with --resume)");
      r.params = model->num_parameters();
      r.metric.push_back(lm ? t.eval.perplexity() : t.eval.accuracy);
      r.loss.push_back(t.eval.loss);
      r.seconds.push_back(t.seconds);
      if (r.cfg.pe_channels > 0) r.temps.push_back(pe_temperatures(*model));
      if (s == 0) r.curve = t.losses;
      if (!a.no_maps) {  // PNGs for the first seed; the values behind them for every seed (report.html)
        std::string maps_dir = o.out_dir + "/attention";
        make_dirs(maps_dir);
        // Only the bytes the corpus has (a corpus without ':' or '?' must not stop the study).
        std::string text =
            lm ? in_vocabulary(r.cfg, "ROMEO:\nBut soft, what light through yonder window breaks?") : "";
        if (lm && int64_t(text.size()) > r.cfg.context) text.resize(size_t(r.cfg.context));
        ModelInput in = make_input(*model, text, 0, seed, a.model.data_dir);
        if (s == 0) r.maps = attention_maps(*model, in, maps_dir, "");
        write_map_values(*model, {in}, seed, maps_dir + "/maps.json");
      }
    }
    // KV cache per token for the whole model, float32 as qkvlab stores it.
    r.kv_bytes = kv_bytes_per_token(r.cfg, 4);
    results.push_back(std::move(r));
  }

  // Table, JSON, CSV, loss curves.
  std::vector<std::vector<std::string>> rows;
  nlohmann::ordered_json j;
  j["task"] = a.model.task;
  j["metric"] = metric_name;
  j["seeds"] = a.seeds;
  j["d_model"] = base.d_model, j["layers"] = base.n_layers, j["heads"] = base.n_heads, j["context"] = base.context;
  j["init"] = base.init;
  j["pe_init"] = base.pe_init;
  j["recipe"] = nlohmann::ordered_json::parse(recipe_json(recipe));
  std::ofstream csv(a.out + "/results.csv");
  check(bool(csv), "study: cannot write ", a.out, "/results.csv");
  csv << "variant,paper_name,parameters,kv_bytes_per_token,kv_reduction_percent,metric,metric_mean,metric_std,"
         "eval_loss_mean,train_seconds_mean\n";
  std::vector<plot::Series> curves;
  const int64_t curve_points = results.empty() ? 0 : int64_t(results[0].curve.size());
  const int64_t smooth = curve_points > 200 ? curve_points / 50 : 1;
  for (auto& r : results) {
    double reduction = 100.0 * (1.0 - double(r.kv_bytes) / double(qkv_bytes));
    double m = mean(r.metric), sd = stdev(r.metric);
    std::string metric = fixed(m, lm ? 3 : 4) + (a.seeds > 1 ? " ± " + fixed(sd, lm ? 3 : 4) : "");
    double max_asym = 0;
    for (auto& h : r.maps) max_asym = std::max(max_asym, h.asymmetry);
    rows.push_back({r.spec.id(), r.spec.paper_name(), with_commas(r.params), with_commas(r.kv_bytes) + " B",
                    fixed(reduction, 1) + " %", metric, temps_str(r.mean_temps()),
                    r.maps.empty() ? "-" : fixed(max_asym, 3), fixed(mean(r.seconds), 1) + " s"});
    j["variants"].push_back({{"variant", r.spec.id()},
                             {"paper_name", r.spec.paper_name()},
                             {"parameters", r.params},
                             {"kv_bytes_per_token", r.kv_bytes},
                             {"kv_reduction_percent", reduction},
                             {"metric", r.metric},
                             {"metric_mean", m},
                             {"metric_std", sd},
                             {"eval_loss", r.loss},
                             {"train_seconds", r.seconds},
                             {"max_score_asymmetry", max_asym}});
    if (!r.temps.empty()) {  // the learned temperature sum w of each layer (positional_bias.h)
      j["variants"].back()["pe_temperature"] = r.mean_temps();
      j["variants"].back()["pe_temperature_seeds"] = r.temps;
    }
    csv << r.spec.id() << "," << r.spec.paper_name() << "," << r.params << "," << r.kv_bytes << "," << reduction
        << "," << (lm ? "val_ppl" : "accuracy") << "," << m << "," << sd << "," << mean(r.loss) << ","
        << mean(r.seconds) << "\n";
    plot::Series s;
    s.label = r.spec.paper_name();
    // Per-step losses are noisy (an LM's jump by 10 % from batch to batch), so long runs plot the mean of the
    // last `smooth` steps: the curves of close variants stay apart and the ordering can be read.
    double window_sum = 0;
    for (size_t i = 0; i < r.curve.size(); ++i) {
      window_sum += r.curve[i].second;
      if (i >= size_t(smooth)) window_sum -= r.curve[i - size_t(smooth)].second;
      s.x.push_back(double(r.curve[i].first));
      s.y.push_back(window_sum / double(std::min<size_t>(i + 1, size_t(smooth))));
    }
    curves.push_back(s);
  }
  {
    std::ofstream f(a.out + "/results.json");
    check(bool(f), "study: cannot write ", a.out, "/results.json");
    f << j.dump(2) << "\n";
  }
  plot::ChartOptions co;
  co.title = "training loss, task " + a.model.task + (a.seeds > 1 ? " (first seed)" : "") +
             (smooth > 1 ? ", mean of " + std::to_string(smooth) + " steps" : "");
  co.log_y = true;
  plot::write_line_chart(a.out + "/loss_curves.png", curves, co);
  // report.html from the files above (app/report.h); if it fails, one line on stderr and the study still succeeds.
  const bool report = write_report_after_study(a.out);

  if (a.common.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return results;
  }
  std::printf("\nStudy: task %s, d_model %lld, %lld layers, %lld heads, %s %lld; %lld seed%s; metric: %s%s\n\n",
              a.model.task.c_str(), (long long)base.d_model, (long long)base.n_layers, (long long)base.n_heads,
              lm ? "context" : "length", (long long)base.context, (long long)a.seeds, a.seeds > 1 ? "s" : "",
              metric_name.c_str(), a.seeds > 1 ? " (mean ± std over seeds)" : "");
  std::printf("init %s, (X)+ pe-init %s; recipe: %s\n\n", base.init.c_str(), base.pe_init.c_str(),
              recipe_line(recipe).c_str());
  std::printf("%s", markdown_table({"variant", "paper name", "parameters", "KV cache / token", "KV reduction",
                                    metric_name, "sum w (per layer)", "max abs(S-S^T)", "train time"},
                                   rows)
                        .c_str());
  std::printf("\nwrote %s/results.json, results.csv, loss_curves.png%s and one folder per variant (checkpoint, "
              "metrics.jsonl, attention/*.png)\n",
              a.out.c_str(), report ? ", report.html (open it in a browser)" : "");
  return results;
}

void run(StudyArgs& a) {
  apply_common_flags(a.common);
  check(a.seeds >= 1 && a.seeds <= 100, "study: --seeds must be 1..100, got ", a.seeds);
  if (a.inits.empty()) {
    study_one(a);
    return;
  }
  // --inits torch,gpt2: the same study once per init, each in OUT/<init>, then the verdicts side by side.
  std::vector<std::string> inits;
  for (size_t p = 0; p <= a.inits.size();) {
    size_t q = a.inits.find(',', p);
    if (q == std::string::npos) q = a.inits.size();
    std::string name = a.inits.substr(p, q - p);
    check(name == "torch" || name == "gpt2", "study: unknown init '", name, "' in --inits; valid: torch, gpt2");
    inits.push_back(name);
    p = q + 1;
  }
  check(a.model.init.empty(), "study: give --init or --inits, not both");
  const std::string out = a.out;
  std::vector<std::vector<VariantResult>> all;
  for (const std::string& init : inits) {
    a.model.init = init;
    a.out = out + "/" + init;
    all.push_back(study_one(a));
  }
  a.out = out;
  a.model.init.clear();
  if (a.common.json) return;
  const bool lm = a.model.task == "lm";
  std::vector<std::string> head = {"variant", "paper name"};
  for (auto& init : inits) {
    head.push_back(init + (lm ? " val ppl" : " accuracy"));
    head.push_back(init + " sum w");
  }
  std::vector<std::vector<std::string>> rows;
  for (size_t v = 0; v < all[0].size(); ++v) {
    std::vector<std::string> row = {all[0][v].spec.id(), all[0][v].spec.paper_name()};
    for (auto& res : all) {
      const VariantResult& r = res[v];
      row.push_back(fixed(mean(r.metric), lm ? 3 : 4) + (a.seeds > 1 ? " ± " + fixed(stdev(r.metric), lm ? 3 : 4) : ""));
      row.push_back(temps_str(r.mean_temps()));
    }
    rows.push_back(row);
  }
  std::printf("\nInit study: task %s, the same variants, data, seeds and recipe under each init\n\n%s",
              a.model.task.c_str(), markdown_table(head, rows).c_str());
}
}  // namespace

void register_study(CLI::App& app) {
  auto args = std::make_shared<StudyArgs>();
  CLI::App* cmd = app.add_subcommand(
      "study", "Train every variant of a set with the same seed, data and budget, and compare them (paper tables)");
  cmd->add_option("--variants", args->variants,
                  "paper-synthetic (qkv, qk, qk+, kv, single, single+), paper-lm (qkv, kv, qk, single, gqa:H/4, mqa, "
                  "kv-gqa:H/4, kv-mqa), all, or a comma list of variant names")
      ->default_val("paper-synthetic");
  add_model_flags(cmd, args->model);
  add_train_flags(cmd, args->train);
  cmd->add_option("--seeds", args->seeds, "seeds per variant (mean and spread in the table)")->default_val(1);
  cmd->add_option("--out", args->out, "results folder")->default_val("runs/study");
  cmd->add_flag("--no-maps", args->no_maps, "skip the attention-map PNGs");
  cmd->add_flag("--resume", args->resume, "continue the study in --out: finished runs are evaluated again from their "
                                          "checkpoints, unfinished ones continue from theirs");
  cmd->add_flag("--overwrite", args->overwrite, "replace the study in --out (without it, study refuses a --out that "
                                                "holds one)");
  cmd->add_option("--inits", args->inits, "run the study once per init in this comma list (torch,gpt2), each in "
                                          "OUT/<init>, and print the verdicts side by side");
  add_common_flags(cmd, args->common);
  cmd->footer(
      "Examples:\n"
      "  qkvlab study --task reverse --variants paper-synthetic --d-model 64 --layers 2 --heads 2 --epochs 2 --seeds 3\n"
      "  qkvlab study --task swap --variants qkv,single,single+ --heads 2 --seeds 3 --inits torch,gpt2\n"
      "  qkvlab study --task lm --variants paper-lm --heads 8 --steps 1500\n"
      "  qkvlab study --task fmnist --variants paper-synthetic --epochs 1");
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
