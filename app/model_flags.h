// Flags that describe a model and its data, shared by `train` and `study`.
#pragma once
#include <string>

#include "app/common.h"
#include "models/task.h"
#include "models/trainer.h"

namespace qkvlab::app {

struct ModelFlags {
  std::string task = "lm";
  std::string preset;           // lm: tiny (default) | small
  std::string data;             // lm: text file
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t d_model = 0, layers = 0, heads = 0, kv_heads = 0, context = 0, seq_len = 0, pe_channels = 0, ffn = 0;
  int64_t train_size = 10000, test_size = 2000;
  double dropout = 0.0;
  std::string init;             // torch | gpt2; "" = the task's default (models/config.h)
  std::string pe_init;          // normal | identity | negative; "" = normal
};

struct TrainFlags {
  int64_t steps = 0;            // 0: the task's default
  int64_t epochs = 0;           // > 0: steps = epochs * train examples / batch
  int64_t batch = 0;
  double lr = 0.0, weight_decay = 0.0, warmup = 0.05;
  static constexpr double kTaskDefault = -1e300;  // not given: the task's default
  double min_lr_ratio = kTaskDefault, clip = kTaskDefault;
  int64_t eval_every = 0, eval_examples = 0, save_every = 0;
  bool anomaly = false;
  bool profile = false;
  bool recompute = false;
};

void add_model_flags(CLI::App* cmd, ModelFlags& f);
void add_train_flags(CLI::App* cmd, TrainFlags& f);

// The model config and task for these flags (defaults per task; the task fills vocabulary and lengths).
ModelConfig build_config(const ModelFlags& f, const VariantSpec& variant, const TaskData& data);
TaskOptions task_options(const ModelFlags& f, uint64_t seed);
// Per task: the synthetic tasks default to the authors' recipe (Adam, lr 1e-3, batch 128, 2 epochs of the training
// set counting each epoch's partial batch, 5 % warm-up then cosine to 0, clip 5).
TrainOptions train_options(const TrainFlags& f, const ModelFlags& m, const TaskData& data, uint64_t seed);

// Installs a SIGINT handler that asks the training loop to save and stop (a second Ctrl-C kills at once).
void install_interrupt_handler();

}  // namespace qkvlab::app
