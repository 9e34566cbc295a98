// qkvlab train: trains one model on one task, with evaluation, checkpoints and --resume.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "app/model_flags.h"
#include "autograd/profile.h"
#include "models/distributed.h"
#include "models/run_dir.h"

namespace qkvlab::app {

namespace {
struct TrainArgs {
  CommonFlags common;
  ModelFlags model;
  TrainFlags train;
  std::string variant = "qkv";
  std::string out;
  bool resume = false;
  bool overwrite = false;
  std::string init_from;
};

// --init-from DIR: a new run (step 0, fresh optimizer state) from the weights of another run or file.
void init_from_weights(TransformerModel& model, const std::string& from, const std::string& out) {
  std::error_code ec;
  const auto a = std::filesystem::weakly_canonical(from, ec), b = std::filesystem::weakly_canonical(out, ec);
  check(a != b && a.parent_path() != b, "train: --init-from ", from, " is the run directory itself; choose another "
                                        "--out (the weights in ", from, " stay as they are)");
  std::unique_ptr<TransformerModel> src = load_model(from);
  check(src->config().variant.id() == model.config().variant.id(), "train --init-from: ", from, " holds a ",
        src->config().variant.id(), " model, not the ", model.config().variant.id(), " asked for (--variant)");
  try {
    model.load_state_dict(src->state_dict());
  } catch (const Error& e) {
    fail("train --init-from: ", from, " does not fit the model asked for: ", e.what());
  }
}

void run(TrainArgs& a) {
  apply_common_flags(a.common);
  VariantSpec variant = parse_variant(a.variant);
  std::unique_ptr<TaskData> data = make_task(task_options(a.model, a.common.seed));
  ModelConfig cfg = build_config(a.model, variant, *data);
  TrainOptions opts = train_options(a.train, a.model, *data, a.common.seed);
  cfg.recipe = recipe_json(opts);  // a record in the checkpoint's config
  if (a.out.empty()) {
    a.out = "runs/" + cfg.task + "-" + variant_dir_name(cfg.variant.id());
  }
  // The run directory (models/run_dir.h): refuse to replace a run unless told, before anything is written.
  check(!(a.resume && a.overwrite), "train: give --resume (continue the run) or --overwrite (replace it), not both");
  check(a.init_from.empty() || !a.resume, "train: --init-from starts a new run from those weights; it cannot be "
                                          "combined with --resume");
  const RunMode mode = a.resume ? RunMode::Resume : a.overwrite ? RunMode::Overwrite : RunMode::New;
  const RunInfo before_info = check_run_dir(a.out, mode, "train");
  // The model first: a model too large to allocate (or any other error) must not leave an empty run directory.
  auto model = make_model(cfg, a.common.seed);
  if (!a.init_from.empty()) init_from_weights(*model, a.init_from, a.out);
  const bool existed = before_info.exists;
  make_dirs(a.out);
  std::shared_ptr<RunLock> lock;
  if (dist::rank() == 0) lock = claim_run_dir(a.out, mode, "train");
  opts.resume = a.resume && inspect_run(a.out).checkpoint;
  if (a.resume && !opts.resume && dist::rank() == 0)  // metrics (or a half-written first save) but no checkpoint
    std::fprintf(stderr, "train --resume: %s has no checkpoint yet (the run stopped before its first save); "
                         "starting it again from step 0\n", a.out.c_str());
  opts.out_dir = a.out;
  const int ranks = dist::size();  // > 1 under mpirun (make MPI=1): only rank 0 prints
  const bool root = dist::rank() == 0;
  if (!a.common.json && root) {
    std::printf("training %s (%s) on %s: d_model %lld, %lld layers, %lld heads (%lld KV), %s parameters\n",
                cfg.variant.id().c_str(), cfg.variant.paper_name().c_str(), data->name().c_str(),
                (long long)cfg.d_model, (long long)cfg.n_layers, (long long)cfg.n_heads, (long long)cfg.kv_heads,
                with_commas(model->num_parameters()).c_str());
    if (ranks > 1)
      std::printf("data-parallel over %d MPI ranks: batch %lld per rank, %lld per step\n", ranks,
                  (long long)opts.batch, (long long)opts.batch * ranks);
    if (!a.init_from.empty()) std::printf("weights from %s (a new run: step 0, new optimizer state)\n",
                                          a.init_from.c_str());
    std::printf("init %s%s; %s; run dir %s\n", cfg.init.c_str(),
                cfg.pe_channels > 0 ? (", pe-init " + cfg.pe_init).c_str() : "", recipe_line(opts).c_str(),
                a.out.c_str());
    std::fflush(stdout);
  }
  install_interrupt_handler();
  TrainResult r;
  try {
    r = train_model(*model, *data, opts);
  } catch (const Error&) {
    // Failed before its first logged step (e.g. a batch larger than the data): leave no empty run directory.
    std::error_code ec;
    const std::filesystem::path dir(a.out), metrics = dir / "metrics.jsonl";
    if (!existed) {
      if (std::filesystem::file_size(metrics, ec) == 0 && !ec) std::filesystem::remove(metrics, ec);
      if (std::distance(std::filesystem::directory_iterator(dir, ec), std::filesystem::directory_iterator()) == 1)
        std::filesystem::remove(dir / ".lock", ec);  // all there is: the lock file of the folder this process made
      std::filesystem::remove(dir, ec);  // only if empty: a run with metrics or checkpoints keeps them
    }
    throw;
  }
  if (!root) {  // rank 0 reports for everyone
    if (r.interrupted) throw CLI::RuntimeError(130);
    return;
  }
  const dist::CommStats comm = dist::comm_stats();
  nlohmann::ordered_json j{{"variant", cfg.variant.id()},
                           {"paper_name", cfg.variant.paper_name()},
                           {"task", cfg.task},
                           {"steps", r.steps},
                           {"interrupted", r.interrupted},
                           {"train_loss", r.train_loss},
                           {"seconds", r.seconds},
                           {"tokens_per_s", r.tokens_per_s},
                           {"parameters", model->num_parameters()},
                           {"out", a.out}};
  if (ranks > 1) {
    j["ranks"] = ranks;
    j["allreduce_ms_per_step"] = 1e3 * comm.seconds / double(std::max<int64_t>(1, comm.calls));
    j["allreduce_bytes"] = comm.bytes;
  }
  j["init"] = cfg.init;
  j["pe_init"] = cfg.pe_init;
  if (auto temps = pe_temperatures(*model); !temps.empty()) j["pe_temperature"] = temps;
  if (!r.interrupted) {
    j["eval_loss"] = r.eval.loss;
    j["eval_ppl"] = r.eval.perplexity();
    j["eval_acc"] = r.eval.accuracy;
  }
  if (profile_enabled()) {  // --profile: the rows of the table main() prints on stderr
    ProfileReport rep = profile_report();
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const ProfileRow& row : rep.rows)
      rows.push_back({{"phase", phase_name(row.phase)}, {"op", row.name}, {"calls", row.calls},
                      {"seconds", row.seconds}, {"share", row.seconds / std::max(rep.total_seconds(), 1e-12)}});
    j["profile"] = {{"steps", rep.steps}, {"step_seconds", rep.step_seconds}, {"rows", rows}};
  }
  if (a.common.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (r.interrupted) {
    std::printf("stopped at step %lld; checkpoint saved in %s (continue with --resume)\n", (long long)r.steps,
                a.out.c_str());
  } else {
    std::printf("done: %lld steps in %.1f s (%.0f tokens/s); eval loss %.4f, perplexity %.3f, accuracy %.4f\n"
                "checkpoint: %s/model.safetensors\n",
                (long long)r.steps, r.seconds, r.tokens_per_s, r.eval.loss, r.eval.perplexity(), r.eval.accuracy,
                a.out.c_str());
    std::string temps;
    for (double t : pe_temperatures(*model)) temps += (temps.empty() ? "" : ", ") + fixed(t, 3);
    if (!temps.empty()) std::printf("(X)+ temperature sum w per layer: %s\n", temps.c_str());
  }
  if (ranks > 1 && !a.common.json)
    std::printf("allreduce: %.2f ms per step (%lld steps, %.1f KB fused buffer), %.1f %% of the wall time\n",
                1e3 * comm.seconds / double(std::max<int64_t>(1, comm.calls)), (long long)comm.calls,
                double(comm.bytes) / 1024.0, 100.0 * comm.seconds / std::max(r.seconds, 1e-9));
  // Interrupted by Ctrl-C: the checkpoint is saved, but the run is not done. Exit with 130 (128 + SIGINT), what
  // the shell reports for a command stopped by Ctrl-C, so that `qkvlab train ... && qkvlab eval ...` stops here.
  // CLI::RuntimeError carries an exit status and prints nothing (main() returns its code).
  if (r.interrupted) {
    std::fflush(stdout);
    throw CLI::RuntimeError(130);
  }
}
}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train one model on one task");
  cmd->add_option("--variant", args->variant, "attention variant: " + variant_ids() +
                                              ", any with +, or the paper's names (Q-K=V, (Q=K=V)+, ...)")
      ->default_val("qkv");
  add_model_flags(cmd, args->model);
  add_train_flags(cmd, args->train);
  cmd->add_option("--out", args->out, "run directory for model.safetensors, optimizer.safetensors, metrics.jsonl "
                                      "(default runs/TASK-VARIANT)");
  cmd->add_flag("--resume", args->resume, "continue the run in --out from its last checkpoint");
  cmd->add_flag("--overwrite", args->overwrite, "replace the run in --out (without it, train refuses a --out that "
                                                "holds a run)");
  cmd->add_option("--init-from", args->init_from, "start a new run (step 0, new optimizer state) from the weights in "
                                                  "this run directory or model.safetensors");
  add_common_flags(cmd, args->common);
  cmd->footer(
      "Examples:\n"
      "  qkvlab train --task lm --variant kv --steps 2000   # no --data: the default corpus\n"
      "  qkvlab train --task lm --data README.md --variant kv --steps 200 --out runs/lm-readme\n"
      "  qkvlab train --task reverse --variant single+ --epochs 2\n"
      "  qkvlab train --task fmnist --variant qkv --epochs 2\n"
      "Ctrl-C saves a checkpoint and stops with exit status 130 (128 + SIGINT: the run is not finished, so\n"
      "`train ... && eval ...` stops too); --resume continues it exactly, bit for bit with the same --threads.\n"
      "A second Ctrl-C quits at once (also status 130), as a crash or kill -9 may: --out always holds the last\n"
      "complete checkpoint (docs/RELIABILITY.md, \"Run directories\"). A --out that holds a run is refused\n"
      "unless --resume or --overwrite; one process at a time writes it (a lock file, --out/.lock).\n"
      "Exit status: 0 done, 2 error (one line on stderr), 130 interrupted by Ctrl-C.");
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
