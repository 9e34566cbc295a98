// A task is where batches come from and how a model is scored on held-out data. The trainer (trainer.h) only
// talks to this interface; tasks.cpp has the three kinds: LM on a text file, the paper's synthetic tasks, and
// Fashion-MNIST.
#pragma once
#include <memory>
#include <string>

#include "models/config.h"
#include "models/transformer.h"

namespace qkvlab {

struct EvalResult {
  double loss = 0.0;      // mean cross-entropy
  double accuracy = 0.0;  // token accuracy (synthetic, LM next-byte) or image accuracy (fmnist)
  int64_t examples = 0;   // sequences / windows / images scored
  double perplexity() const;
};

class TaskData {
 public:
  virtual ~TaskData() = default;
  virtual std::string name() const = 0;
  // A training batch drawn with gen: x (B,T) int64 ids or (B,1,H,W) images; y (B,T) or (B) int64 targets.
  virtual void train_batch(int64_t batch, Generator& gen, Array& x, Array& y) = 0;
  // Scores the model (in eval mode, no grad) on held-out data; max_examples 0 = all of it.
  virtual EvalResult evaluate(TransformerModel& model, int64_t max_examples) = 0;
  virtual int64_t tokens_per_example() const = 0;  // for tokens/s: T for sequences, patches+1 for images
  // The model config this data implies (vocabulary, sequence length, classes), filled into `cfg`.
  virtual void configure(ModelConfig& cfg) const = 0;
  // Where the batch sampler is (epoch order): saved with a checkpoint so that a resumed run draws the same
  // batches. Samplers without state return {}.
  virtual std::vector<int64_t> sampler_state() const { return {}; }
  virtual void set_sampler_state(const std::vector<int64_t>& state) { (void)state; }
  // Epoch-ordered tasks: end each epoch with its partial batch (train_batch then returns fewer examples) instead
  // of skipping it; the authors' synthetic recipe (PyTorch's DataLoader with drop_last=False).
  virtual void set_partial_batches(bool on) { (void)on; }
};

struct TaskOptions {
  std::string task;            // lm | reverse | sort | sub | swap | copy | fmnist
  std::string data;            // lm: text file
  std::string data_dir;        // fmnist: IDX files
  int64_t seq_len = 16;        // synthetic: sequence length T
  int64_t train_size = 10000;  // synthetic: sequences
  int64_t test_size = 2000;
  int64_t context = 64;        // lm: context
  uint64_t seed = 0;
};

// Builds the task's data: reads files, generates synthetic sequences. Errors name the file and the problem.
std::unique_ptr<TaskData> make_task(const TaskOptions& opts);
// For a checkpoint: the task its config describes (LM: the vocabulary must match the file's bytes).
std::unique_ptr<TaskData> make_task_for(const ModelConfig& cfg, const TaskOptions& opts);

}  // namespace qkvlab
