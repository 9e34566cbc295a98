// The training loop shared by `qkvlab train`, `qkvlab study` and the tests:
// AdamW (decay on matrices only), linear warmup + cosine decay, gradient clipping, periodic evaluation,
// checkpoints (atomic) and metrics.jsonl, exact resume, and a stop on a NaN/Inf loss.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "models/checkpoint.h"
#include "models/task.h"

namespace qkvlab {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch = 32;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;   // cosine decays to lr * this
  double warmup_ratio = 0.05;  // share of steps spent warming up
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999;
  double clip = 1.0;           // max gradient norm; 0 = no clipping
  int64_t eval_every = 0;      // 0 = only at the end
  int64_t eval_examples = 0;   // per evaluation; 0 = all held-out data
  int64_t save_every = 0;      // 0 = only at the end (needs out_dir)
  int64_t log_every = 0;       // 0 = about 20 lines per run
  std::string out_dir;         // empty: nothing is written
  bool resume = false;         // continue from out_dir's checkpoint
  int64_t stop_after = 0;      // > 0: stop (saving a checkpoint) after this many steps in this process
  uint64_t seed = 0;           // data order and dropout
  bool anomaly = false;        // stop at the first NaN/Inf naming the op
  bool profile = false;        // time every op (autograd/profile.h); also on with QKVLAB_PROFILE=1
  bool recompute = false;      // recompute block activations in backward: less memory, ~1 more forward a step
  bool verbose = true;         // progress on stderr
  std::string label;           // prefix of progress lines (e.g. the variant in a study)
  bool partial_batches = false;  // epoch tasks: each epoch ends with its partial batch (TaskData::set_partial_batches)
  int64_t epochs = 0;           // for the record (recipe_json): the --epochs that gave `steps`, 0 if --steps
  bool data_parallel = true;  // under mpirun (make MPI=1): batch is per rank, gradients averaged over the ranks
                              // (models/distributed.h); false: this process trains alone
};

struct TrainResult {
  int64_t steps = 0;           // steps done in total (including those before a resume)
  double train_loss = 0.0;     // mean loss of the last logged window
  EvalResult eval;             // the final evaluation
  double seconds = 0.0;        // wall time of this process's steps
  double tokens_per_s = 0.0;
  bool interrupted = false;    // stopped by Ctrl-C or stop_after
  std::vector<std::pair<int64_t, double>> losses;  // (step, loss) of every step this process ran
  std::vector<std::pair<int64_t, EvalResult>> evals;
};

TrainResult train_model(TransformerModel& model, TaskData& data, const TrainOptions& opts);

// The recipe of these options as a JSON object (sorted keys), stored in the model config (ModelConfig::recipe) and
// in a study's results.json: optimizer, lr, batch, steps, epochs, partial_batches, warmup, schedule, min_lr_ratio,
// clip, weight_decay.
std::string recipe_json(const TrainOptions& opts);
// One line for people: "Adam lr 0.001, batch 128, 158 steps (2 epochs, partial batches), 5 % warm-up + cosine to
// 0 x lr, clip 5".
std::string recipe_line(const TrainOptions& opts);

// Ctrl-C: the app's SIGINT handler calls request_stop(); the loop then saves a checkpoint and returns.
void request_stop();
bool stop_requested();
void clear_stop();

}  // namespace qkvlab
