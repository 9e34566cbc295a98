// Checkpoints (docs/DESIGN.md section 6): a run directory holds
//   model.safetensors      the weights, with __metadata__["config"] = the model config as JSON
//   optimizer.safetensors  optimizer buffers ("exp_avg.<param>", ...), "step", and the random generators'
//                          states ("rng.data", "rng.model"), so a resumed run continues bit for bit
//   metrics.jsonl          one JSON object per logged step
// Both files are written atomically (temporary file, fsync, rename): a crash never leaves half a checkpoint.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/transformer.h"
#include "nn/optim.h"

namespace qkvlab {

// "run/" or "run/model.safetensors" -> "run/model.safetensors"; a missing path is an error naming it.
std::string model_file(const std::string& ckpt);

// __metadata__ holds "config" (docs/DESIGN.md section 6) and, for a training run's checkpoint, "step": the step the
// weights belong to, which --resume checks against optimizer.safetensors (the two files are renamed one after
// the other, so a crash between them must not pair weights and optimizer state of different steps).
void save_model(const std::string& path, const TransformerModel& model, int64_t step = -1);
// Reads the config, builds the model and loads its weights. Refuses a file whose tensors do not match the
// architecture its config describes (naming the tensor and both shapes).
std::unique_ptr<TransformerModel> load_model(const std::string& ckpt);
ModelConfig read_config(const std::string& ckpt);

struct TrainingState {
  int64_t step = 0;
  Generator::State data_rng{}, model_rng{};
  std::vector<int64_t> sampler;  // the task's batch sampler (TaskData::sampler_state)
  double window_loss = 0.0;      // the loss summed since the last logged step, and how many steps that is: a run
  int64_t window_n = 0;          // resumed between two log lines logs the same mean as one that never stopped
};
// __metadata__ holds "optimizer" (its name) and "step" (st.step), which the run directory checks against the model's.
void save_training_state(const std::string& path, const Optimizer& opt, const TrainingState& st);
TrainingState load_training_state(const std::string& path, Optimizer& opt);

// Generator state <-> int64 array of 6 words (4 state words, the spare normal's bits, has_spare).
Array rng_to_array(const Generator::State& s);
Generator::State rng_from_array(const Array& a, const std::string& what);

}  // namespace qkvlab
