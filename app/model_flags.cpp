#include "app/model_flags.h"

#include <csignal>
#include <cstdint>

namespace qkvlab::app {

namespace {
// Defaults per task: small enough for a laptop, large enough to learn the task.
struct Defaults {
  int64_t d_model, layers, heads, context, steps, batch;
  double lr;
  int64_t epochs = 0;         // > 0: the default budget is epochs, not steps
  double clip = 1.0, min_lr_ratio = 0.1;
  bool partial_batches = false;
};
Defaults task_defaults(const std::string& task, const std::string& preset) {
  if (task == "lm") {
    if (preset == "small") return {128, 4, 4, 128, 2000, 32, 3e-3};
    check(preset.empty() || preset == "tiny", "unknown --preset '", preset, "' for lm; valid: tiny, small");
    return {64, 2, 4, 64, 2000, 32, 3e-3};
  }
  check(preset.empty(), "--preset applies to --task lm only");
  if (task == "fmnist") return {64, 4, 4, 17, 1500, 128, 2e-3};
  // synthetic, T = 16: the authors' recipe (Adam, lr 1e-3, batch 128, 2 epochs with partial batches, clip 5,
  // cosine to 0)
  return {64, 2, 4, 16, 0, 128, 1e-3, 2, 5.0, 0.0, true};
}
}  // namespace

void add_model_flags(CLI::App* cmd, ModelFlags& f) {
  cmd->add_option("--task", f.task, "lm (a text file), reverse | sort | sub | swap | copy (the paper's synthetic "
                                    "tasks), fmnist (Fashion-MNIST)")
      ->default_val("lm");
  cmd->add_option("--preset", f.preset, "LM model size: tiny (context 64, d 64, 4 heads, 2 layers) or small "
                                        "(context 128, d 128, 4 heads, 4 layers)");
  cmd->add_option("--data", f.data, "lm: the text file to learn (90 % train, 10 % validation by bytes)");
  cmd->add_option("--data-dir", f.data_dir, "fmnist: the folder with the gzipped IDX files")
      ->default_val("/usr/share/datasets/fashion-mnist");
  cmd->add_option("--d-model", f.d_model, "model width (default: per task)");
  cmd->add_option("--layers", f.layers, "transformer blocks (default: per task)");
  cmd->add_option("--heads", f.heads, "attention heads; must divide --d-model");
  cmd->add_option("--kv-heads", f.kv_heads, "key/value heads for GQA (G divides heads; 1 = MQA); qkv and kv only");
  cmd->add_option("--context", f.context, "lm: context length in bytes");
  cmd->add_option("--seq-len", f.seq_len, "synthetic tasks: sequence length T (default 16)");
  cmd->add_option("--pe-channels", f.pe_channels, "channels of the (X)+ positional score bias (default 10)");
  cmd->add_option("--ffn", f.ffn, "MLP hidden size (default 4 x d-model)");
  cmd->add_option("--train-size", f.train_size, "synthetic tasks: training sequences")->default_val(10000);
  cmd->add_option("--test-size", f.test_size, "synthetic tasks: test sequences")->default_val(2000);
  cmd->add_option("--dropout", f.dropout, "dropout probability (unused by the current models; kept for configs)")
      ->default_val(0.0);
  cmd->add_option("--init", f.init, "initialisation: torch (PyTorch module defaults, as the authors' synthetic and "
                                    "vision code; default for those tasks) or gpt2 (N(0, 0.02), zero biases; default "
                                    "for lm)")
      ->check(CLI::IsMember({"torch", "gpt2"}));
  cmd->add_option("--pe-init", f.pe_init, "(X)+ variants: the mixing weights w at the start: normal (N(0, 0.02), "
                                          "the authors'; default), identity (w = 1/m, sum w = +1) or negative "
                                          "(w = -1/m)")
      ->check(CLI::IsMember({"normal", "identity", "negative"}));
}

void add_train_flags(CLI::App* cmd, TrainFlags& f) {
  cmd->add_option("--steps", f.steps, "optimizer steps (default: per task)");
  cmd->add_option("--epochs", f.epochs, "instead of --steps: passes over the training set (synthetic: default 2, "
                                        "each epoch ending with its partial batch; fmnist)");
  cmd->add_option("--batch", f.batch, "examples per step (default: per task)");
  cmd->add_option("--lr", f.lr, "peak learning rate of Adam(W) (default: per task; synthetic 1e-3)");
  cmd->add_option("--weight-decay", f.weight_decay, "AdamW decoupled weight decay on matrices")->default_val(0.0);
  cmd->add_option("--warmup", f.warmup, "share of steps with linear warmup before the cosine decay")
      ->default_val(0.05);
  cmd->add_option("--min-lr-ratio", f.min_lr_ratio, "the cosine decays to lr x this (default: synthetic 0, else 0.1)");
  cmd->add_option("--clip", f.clip, "gradient-norm clipping, 0 = off (default: synthetic 5, else 1)");
  cmd->add_option("--eval-every", f.eval_every, "evaluate every N steps (0 = at the end only)");
  cmd->add_option("--eval-examples", f.eval_examples, "held-out examples per evaluation (0 = all)");
  cmd->add_option("--save-every", f.save_every, "checkpoint every N steps (always at the end)");
  cmd->add_flag("--anomaly", f.anomaly, "stop at the first NaN/Inf and name the op that made it (slower)");
  cmd->add_flag("--profile", f.profile, "time every op, forward and backward, and print the table at the end "
                                        "(also QKVLAB_PROFILE=1)");
  cmd->add_flag("--recompute", f.recompute, "keep only each block's input and recompute its activations in "
                                            "backward: much less memory for about one more forward per step");
}

TaskOptions task_options(const ModelFlags& f, uint64_t seed) {
  Defaults d = task_defaults(f.task, f.preset);
  TaskOptions t;
  t.task = f.task;
  t.data = f.data;
  t.data_dir = f.data_dir;
  t.seq_len = f.seq_len > 0 ? f.seq_len : 16;
  t.train_size = f.train_size;
  t.test_size = f.test_size;
  t.context = f.context > 0 ? f.context : d.context;
  t.seed = seed;
  check(f.seq_len >= 0 && f.context >= 0 && f.train_size > 0 && f.test_size > 0,
        "sizes must be positive (--seq-len, --context, --train-size, --test-size)");
  return t;
}

ModelConfig build_config(const ModelFlags& f, const VariantSpec& variant, const TaskData& data) {
  Defaults d = task_defaults(f.task, f.preset);
  check(f.d_model >= 0 && f.layers >= 0 && f.heads >= 0 && f.kv_heads >= 0 && f.pe_channels >= 0 && f.ffn >= 0,
        "model sizes must be positive");
  ModelConfig c;
  c.task = f.task;
  c.variant = variant;
  if (f.kv_heads > 0) {
    check(variant.kv_heads == 0 || variant.kv_heads == f.kv_heads, "--kv-heads ", f.kv_heads,
          " contradicts variant ", variant.id());
    c.variant.kv_heads = f.kv_heads;
  }
  c.d_model = f.d_model > 0 ? f.d_model : d.d_model;
  c.n_layers = f.layers > 0 ? f.layers : d.layers;
  c.n_heads = f.heads > 0 ? f.heads : d.heads;
  c.pe_channels = f.pe_channels;
  c.ffn = f.ffn;
  check(f.dropout >= 0 && f.dropout < 1, "--dropout must be in [0, 1), got ", f.dropout);
  c.dropout = f.dropout;
  c.init = f.init;
  c.pe_init = f.pe_init;
  data.configure(c);  // vocabulary, context / sequence length, classes
  c.resolve();
  return c;
}

TrainOptions train_options(const TrainFlags& f, const ModelFlags& m, const TaskData& data, uint64_t seed) {
  Defaults d = task_defaults(m.task, m.preset);
  TrainOptions o;
  o.batch = f.batch > 0 ? f.batch : d.batch;
  check(f.steps >= 0 && f.epochs >= 0 && f.batch >= 0, "--steps, --epochs and --batch must be positive");
  check(!(f.steps > 0 && f.epochs > 0), "give --steps or --epochs, not both");
  const int64_t epochs = f.steps > 0 ? 0 : f.epochs > 0 ? f.epochs : d.epochs;
  o.partial_batches = d.partial_batches;
  if (epochs > 0) {
    check(m.task != "lm", "--epochs is for the synthetic tasks and fmnist; use --steps for lm");
    int64_t n = m.task == "fmnist" ? 60000 : m.train_size;
    check(epochs <= INT64_MAX / std::max<int64_t>(n, 1), "--epochs ", epochs, " is too many (", n,
          " examples each)");
    // With partial batches an epoch is ceil(n / batch) steps (10,000 at batch 128: 79), else floor.
    const int64_t per_epoch = o.partial_batches ? (n + o.batch - 1) / o.batch : n / o.batch;
    o.steps = std::max<int64_t>(1, epochs * per_epoch);
    o.epochs = epochs;
  } else {
    o.steps = f.steps > 0 ? f.steps : d.steps;
  }
  o.lr = f.lr > 0 ? f.lr : d.lr;
  o.weight_decay = f.weight_decay;
  o.warmup_ratio = f.warmup;
  o.min_lr_ratio = f.min_lr_ratio == TrainFlags::kTaskDefault ? d.min_lr_ratio : f.min_lr_ratio;
  o.clip = f.clip == TrainFlags::kTaskDefault ? d.clip : f.clip;
  o.eval_every = f.eval_every;
  o.eval_examples = f.eval_examples;
  o.save_every = f.save_every;
  o.anomaly = f.anomaly;
  o.profile = f.profile;
  o.recompute = f.recompute;
  o.seed = seed;
  check(f.warmup >= 0 && f.warmup <= 1, "--warmup must be in [0, 1], got ", f.warmup);
  check(o.clip >= 0, "--clip must be >= 0, got ", o.clip);
  // Negative values used to slip through: --lr -1 silently became the default, --min-lr-ratio -2 made the cosine
  // end in gradient ascent, a negative --eval-every/--save-every silently never happened.
  check(f.lr >= 0, "--lr must be positive (or 0 for the task's default), got ", f.lr);
  check(f.weight_decay >= 0, "--weight-decay must be >= 0, got ", f.weight_decay);
  check(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1], got ", o.min_lr_ratio);
  check(f.eval_every >= 0 && f.eval_examples >= 0 && f.save_every >= 0,
        "--eval-every, --eval-examples and --save-every must be >= 0 (0: at the end / all), got ", f.eval_every, ", ",
        f.eval_examples, ", ", f.save_every);
  (void)data;
  return o;
}

namespace {
void on_sigint(int) {
  if (stop_requested()) std::_Exit(130);  // a second Ctrl-C: leave now
  request_stop();
}
}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }

}  // namespace qkvlab::app
