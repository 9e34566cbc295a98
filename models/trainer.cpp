#include "models/trainer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/profile.h"
#include "models/distributed.h"
#include "models/run_dir.h"
#include "models/safetensors.h"

namespace qkvlab {

namespace {
std::atomic<bool> g_stop{false};

// A finite loss beyond this is divergence too. Every task's loss is a cross-entropy over at most 256 classes, which
// starts near log(classes) <= 5.6; a mean of 1e4 nats means the weights have blown up (--lr 1e3 gets there in one
// step, and with LayerNorm in every block the loss then stays huge but finite instead of turning into NaN).
constexpr double kDivergedLoss = 1e4;

std::string join(const std::string& dir, const std::string& f) { return dir + (dir.back() == '/' ? "" : "/") + f; }

// Keeps the metrics lines up to `step` (a resumed run rewrites what came after its checkpoint; -1: none). The file is
// replaced by a rename, so a kill while it is rewritten leaves the old lines, never fewer.
void truncate_metrics(const std::string& path, int64_t step) {
  std::vector<std::string> keep;
  if (std::ifstream in(path); in) {
    for (std::string line; std::getline(in, line);) {
      try {
        auto j = nlohmann::json::parse(line);
        if (j.contains("step") && j["step"].get<int64_t>() <= step) keep.push_back(line);
      } catch (...) {
        // a torn last line from a crash: drop it
      }
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (auto& l : keep) out << l << "\n";
    out.flush();
    check(bool(out), "train: cannot write ", tmp);
  }
  check(std::rename(tmp.c_str(), path.c_str()) == 0, "train: cannot rename ", tmp, " to ", path, ": ",
        std::strerror(errno));
}

std::string format_duration(double s) {
  char buf[32];
  int t = int(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  return buf;
}
}  // namespace

void request_stop() { g_stop = true; }
bool stop_requested() { return g_stop.load(); }
void clear_stop() { g_stop = false; }

double EvalResult::perplexity() const { return std::exp(loss); }

std::string recipe_json(const TrainOptions& o) {
  nlohmann::json j;  // sorted keys: the text round-trips through a checkpoint unchanged
  j["optimizer"] = o.weight_decay > 0 ? "AdamW" : "Adam";
  j["lr"] = o.lr;
  j["beta1"] = o.beta1;
  j["beta2"] = o.beta2;
  j["batch"] = o.batch;
  j["steps"] = o.steps;
  j["epochs"] = o.epochs;
  j["partial_batches"] = o.partial_batches;
  j["warmup"] = o.warmup_ratio;
  j["schedule"] = "linear warm-up, cosine";
  j["min_lr_ratio"] = o.min_lr_ratio;
  j["clip"] = o.clip;
  j["weight_decay"] = o.weight_decay;
  return j.dump();
}

std::string recipe_line(const TrainOptions& o) {
  char buf[256];
  std::string steps = std::to_string(o.steps) + " steps";
  if (o.epochs > 0)
    steps += " (" + std::to_string(o.epochs) + " epoch" + (o.epochs > 1 ? "s" : "") +
             (o.partial_batches ? ", partial batches" : "") + ")";
  std::snprintf(buf, sizeof buf, "%s lr %g%s, batch %lld, %s, %g %% warm-up + cosine to %g x lr, clip %g",
                o.weight_decay > 0 ? "AdamW" : "Adam", o.lr,
                o.weight_decay > 0 ? (" wd " + std::to_string(o.weight_decay)).c_str() : "", (long long)o.batch,
                steps.c_str(), 100.0 * o.warmup_ratio, o.min_lr_ratio, o.clip);
  return buf;
}

TrainResult train_model(TransformerModel& model, TaskData& data, const TrainOptions& o) {
  check(o.steps > 0, "train: --steps must be positive, got ", o.steps);
  check(o.batch > 0, "train: --batch must be positive, got ", o.batch);
  check(o.lr > 0 && std::isfinite(o.lr), "train: --lr must be a positive number, got ", o.lr);
  check(!o.resume || !o.out_dir.empty(), "train: --resume needs --out (the run directory to continue)");
  TrainResult res;
  if (o.profile) set_profile_enabled(true);
  model.set_recompute(o.recompute);
  // Data-parallel (models/distributed.h): with N ranks, --batch is per rank and a step sees N x batch examples;
  // every rank reads the checkpoint it resumes from, only rank 0 writes files and prints.
  const int world = o.data_parallel ? dist::size() : 1;
  const int rank = o.data_parallel ? dist::rank() : 0;
  const bool root = rank == 0;
  data.set_partial_batches(o.partial_batches && world == 1);  // ranks split a batch evenly: whole batches only
  const bool files = !o.out_dir.empty();
  const bool writer = files && root;
  const std::string metrics_path = files ? join(o.out_dir, "metrics.jsonl") : "";

  AdamW opt(make_param_groups(model, o.weight_decay), o.lr, o.beta1, o.beta2);
  const int64_t warmup = int64_t(o.warmup_ratio * double(o.steps));
  WarmupCosineLR schedule(o.lr, warmup, o.steps, o.lr * o.min_lr_ratio);
  Generator data_rng(o.seed * 2 + 1);
  int64_t step = 0;
  int64_t saved_step = -1;  // the step of this run's last checkpoint (-1: none yet), named when training diverges

  std::shared_ptr<RunLock> lock;  // the writer holds the run directory (models/run_dir.h) for as long as it runs
  if (writer) lock = lock_run_dir(o.out_dir);
  TrainingState resumed;
  if (o.resume) {
    TrainingState ts = load_checkpoint(o.out_dir, model, opt);
    resumed = ts;
    step = ts.step;
    saved_step = step;
    data_rng.set_state(ts.data_rng);
    data.set_sampler_state(ts.sampler);
    model.generator().set_state(ts.model_rng);
    if (root) truncate_metrics(metrics_path, step);
    check(step < o.steps, "train --resume: the run in ", o.out_dir, " already did ", step, " of ", o.steps,
          " steps; raise --steps to continue");
  } else if (writer) {
    truncate_metrics(metrics_path, -1);
  }
  std::ofstream metrics;
  if (writer) {
    metrics.open(metrics_path, std::ios::app);
    check(bool(metrics), "train: cannot write ", metrics_path);
  }

  double window_loss = resumed.window_loss;  // the losses since the last logged step (saved with the checkpoint)
  int64_t window_n = resumed.window_n;
  const std::vector<Tensor> params = model.parameters();
  auto check_ranks_agree = [&](const char* when) {
    check(world == 1 || dist::parameters_agree(params), "data-parallel training: the ranks' parameters differ ", when,
          " (they must start from the same seed and checkpoint, and run the same binary)");
  };
  check_ranks_agree("at the start");
  auto save = [&] {
    check_ranks_agree("at a checkpoint");
    if (!writer) return;
    save_checkpoint(o.out_dir, model, opt,
                    {step, data_rng.state(), model.generator().state(), data.sampler_state(), window_loss, window_n});
    saved_step = step;
  };
  auto log_json = [&](const nlohmann::ordered_json& j) {
    if (writer) metrics << j.dump() << "\n" << std::flush;
  };
  auto evaluate = [&] {
    ProfilePause pause;  // the profile is of training steps
    EvalResult e = data.evaluate(model, o.eval_examples);
    res.evals.emplace_back(step, e);
    log_json({{"step", step}, {"eval_loss", e.loss}, {"eval_ppl", e.perplexity()}, {"eval_acc", e.accuracy},
              {"eval_examples", e.examples}});
    return e;
  };

  const bool tty = isatty(STDERR_FILENO);
  const int64_t log_every = o.log_every > 0 ? o.log_every : std::max<int64_t>(1, o.steps / 20);
  const int64_t tokens_per_step = o.batch * world * data.tokens_per_example();  // over all ranks
  const int64_t first_step = step;
  auto t0 = std::chrono::steady_clock::now();
  const std::string opt_step_name = opt.name() + ".step";  // the profiler's row for the optimizer
  bool stop_all = false;  // data-parallel: a rank was asked to stop (every rank learns it in the step's allreduce)
  model.train();
  while (step < o.steps) {
    if ((world > 1 ? stop_all : stop_requested()) || (o.stop_after > 0 && step - first_step >= o.stop_after)) {
      res.interrupted = true;
      break;
    }
    const auto step_start = std::chrono::steady_clock::now();
    opt.lr = schedule.lr(step);
    Array x, y;
    {
      ProfileScope prof("train_batch", ProfilePhase::Data);
      data.train_batch(o.batch * world, data_rng, x, y);  // every rank draws the same global batch...
      if (world > 1) {                                     // ...and keeps its own rows of it
        x = dist::shard_rows(x, rank, world);
        y = dist::shard_rows(y, rank, world);
      }
    }
    double loss_value;
    {
      AnomalyGuard anomaly(o.anomaly || anomaly_enabled());
      StepResult r = model_loss(model, x, y);
      loss_value = r.loss.item();
      opt.zero_grad();
      if (std::isfinite(loss_value)) r.loss.backward();
    }
    if (world > 1) {  // one allreduce: mean gradient, global mean loss, and whether any rank must stop
      stop_all = stop_requested();
      loss_value = dist::average_gradients(params, loss_value, stop_all);
    }
    if (!std::isfinite(loss_value) || loss_value > kDivergedLoss)
      fail("training diverged: the loss is ", loss_value, " at step ", step + 1, " (lr ", opt.lr, ")",
           std::isfinite(loss_value) ? ", above 10000: the weights have blown up (lower --lr)" : "",
           !files             ? std::string()
           : saved_step >= 0  ? "; the last good checkpoint (step " + std::to_string(saved_step) + ") in " +
                                    o.out_dir + " is kept"
                              : "; no checkpoint of this run was saved before it (see --save-every)",
           o.anomaly || std::isfinite(loss_value) ? "" : "; rerun with --anomaly to name the op");
    {
      ProfileScope prof("clip_grad_norm", ProfilePhase::Optimizer);
      if (o.clip > 0) clip_grad_norm(model.parameters(), o.clip);
    }
    {
      ProfileScope prof(opt_step_name.c_str(), ProfilePhase::Optimizer);
      opt.step();
    }
    profile_add_step(std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count());
    ++step;
    res.losses.emplace_back(step, loss_value);
    window_loss += loss_value;
    ++window_n;

    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double tps = double((step - first_step) * tokens_per_step) / std::max(elapsed, 1e-9);
    if (step % log_every == 0 || step == o.steps) {
      res.train_loss = window_loss / double(window_n);
      log_json({{"step", step}, {"loss", res.train_loss}, {"lr", opt.lr}, {"tokens_per_s", tps},
                {"elapsed_s", elapsed}});
      window_loss = 0.0;
      window_n = 0;
    }
    if (o.verbose && root && (tty || step % log_every == 0 || step == o.steps)) {
      double remaining = elapsed / double(step - first_step) * double(o.steps - step);
      std::fprintf(stderr, "%s%s%sstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %s elapsed  %s left%s",
                   tty ? "\r\033[K" : "", o.label.c_str(), o.label.empty() ? "" : "  ", (long long)step,
                   (long long)o.steps, loss_value, opt.lr, tps, format_duration(elapsed).c_str(),
                   format_duration(remaining).c_str(), tty ? "" : "\n");
      std::fflush(stderr);
    }
    if (root && o.eval_every > 0 && step % o.eval_every == 0 && step < o.steps) {  // other ranks go on
      EvalResult e = evaluate();
      model.train();
      if (o.verbose)
        std::fprintf(stderr, "%s%s%seval at step %lld: loss %.4f  ppl %.3f  acc %.4f\n", tty ? "\r\033[K" : "",
                     o.label.c_str(), o.label.empty() ? "" : "  ", (long long)step, e.loss, e.perplexity(),
                     e.accuracy);
    }
    if (o.save_every > 0 && step % o.save_every == 0) save();
  }
  if (o.verbose && root && tty) std::fprintf(stderr, "\n");
  res.steps = step;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.tokens_per_s = double((step - first_step) * tokens_per_step) / std::max(res.seconds, 1e-9);
  if (!res.interrupted && root) {
    res.eval = evaluate();
    if (o.verbose)
      std::fprintf(stderr, "%s%sfinal eval: loss %.4f  ppl %.3f  acc %.4f  (%lld examples)\n", o.label.c_str(),
                   o.label.empty() ? "" : "  ", res.eval.loss, res.eval.perplexity(), res.eval.accuracy,
                   (long long)res.eval.examples);
  }
  save();
  model.eval();
  return res;
}

}  // namespace qkvlab
