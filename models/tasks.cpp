// The three kinds of task: next-byte LM on any text file, the paper's five synthetic digit tasks, Fashion-MNIST.
#include <sys/stat.h>

#include <cmath>

#include "models/data.h"
#include "models/task.h"

namespace qkvlab {

namespace {
// Mean cross-entropy and accuracy over batches, no grad, eval mode. Weighted by targets so batch sizes may differ.
template <class Batches>
EvalResult score(TransformerModel& model, const Batches& batches, int64_t examples) {
  NoGradGuard no_grad;
  model.eval();
  double loss = 0.0, correct = 0.0;
  int64_t targets = 0;
  for (const Batch& b : batches) {
    // The synthetic tasks' chunks of 250 sequences take 4,000 rows, whose MLP activations (4 MB at d 64) outgrew
    // L2: forwards of about 125 (the demo's evaluation 83-96 -> 72-79 ms).
    StepResult r = model_loss(model, b.x, b.y, 125);
    int64_t n = b.y.numel();
    loss += r.loss.item() * double(n);
    correct += r.accuracy * double(n);
    targets += n;
  }
  EvalResult e;
  e.loss = targets ? loss / double(targets) : 0.0;
  e.accuracy = targets ? correct / double(targets) : 0.0;
  e.examples = examples;
  return e;
}

std::vector<Batch> chunk(const Array& x, const Array& y, int64_t limit, int64_t batch) {
  const int64_t n = limit > 0 ? std::min(limit, x.size(0)) : x.size(0);
  std::vector<Batch> out;
  for (int64_t s = 0; s < n; s += batch) {
    int64_t len = std::min(batch, n - s);
    out.push_back({x.narrow(0, s, len), y.narrow(0, s, len)});
  }
  return out;
}

class LMTask : public TaskData {
 public:
  // path: the file or folder read (recorded in the config as "data"); label: what the output calls it.
  LMTask(const std::string& path, const std::string& label, const std::string& corpus, const ByteTokenizer& tok,
         int64_t context)
      : path_(path), label_(label), data_(corpus, tok, context) {}
  std::string name() const override { return "lm:" + label_; }
  void train_batch(int64_t batch, Generator& gen, Array& x, Array& y) override {
    Batch b = data_.sample(Split::Train, batch, gen);
    x = b.x;
    y = b.y;
  }
  EvalResult evaluate(TransformerModel& model, int64_t max_examples) override {
    std::vector<Batch> batches = data_.eval_batches(Split::Val, 32, max_examples);
    int64_t windows = 0;
    for (auto& b : batches) windows += b.x.size(0);
    return score(model, batches, windows);
  }
  int64_t tokens_per_example() const override { return data_.context(); }
  void configure(ModelConfig& cfg) const override {
    cfg.vocab = data_.tokenizer().vocab();
    cfg.vocab_size = data_.tokenizer().size();
    cfg.context = data_.context();
    cfg.data = path_;
  }

 private:
  std::string path_, label_;
  TextDataset data_;
};

// Shuffled epochs over a fixed training set (synthetic sequences or images), scored on a fixed test set.
class EpochTask : public TaskData {
 public:
  EpochTask(std::string name, Array train_x, Array train_y, Array test_x, Array test_y)
      : name_(std::move(name)), train_x_(train_x), train_y_(train_y), test_x_(test_x), test_y_(test_y),
        sampler_(train_x.size(0)) {}
  std::string name() const override { return name_; }
  void train_batch(int64_t batch, Generator& gen, Array& x, Array& y) override {
    check(batch <= sampler_.size(), "batch ", batch, " is larger than the training set of ", sampler_.size());
    Batch b = take_batch(train_x_, train_y_, sampler_.next(batch, gen));
    x = b.x;
    y = b.y;
  }
  EvalResult evaluate(TransformerModel& model, int64_t max_examples) override {
    auto batches = chunk(test_x_, test_y_, max_examples, 250);
    int64_t n = max_examples > 0 ? std::min(max_examples, test_x_.size(0)) : test_x_.size(0);
    return score(model, batches, n);
  }
  void set_partial_batches(bool on) override { sampler_.set_keep_last(on); }
  std::vector<int64_t> sampler_state() const override {
    auto s = sampler_.state();
    return {s.epoch, int64_t(s.perm_seed), s.pos};
  }
  void set_sampler_state(const std::vector<int64_t>& v) override {
    check(v.size() == 3, "sampler state: expected 3 numbers, got ", v.size());
    sampler_.set_state({v[0], uint64_t(v[1]), v[2]});
  }

 protected:
  std::string name_;
  Array train_x_, train_y_, test_x_, test_y_;
  EpochSampler sampler_;
};

class SyntheticTaskData : public EpochTask {
 public:
  SyntheticTaskData(SyntheticTask task, const SyntheticSplits& s)
      : EpochTask(task_name(task), s.train.x, s.train.y, s.test.x, s.test.y), T_(s.train.x.size(1)) {}
  int64_t tokens_per_example() const override { return T_; }
  void configure(ModelConfig& cfg) const override {
    cfg.vocab_size = 10;
    cfg.n_classes = 10;
    cfg.context = T_;
  }

 private:
  int64_t T_;
};

class FashionMnistTask : public EpochTask {
 public:
  explicit FashionMnistTask(const FashionMnist& d)
      : EpochTask("fmnist", d.train.images, d.train.labels, d.test.images, d.test.labels) {}
  int64_t tokens_per_example() const override { return 17; }  // 16 patches of 7x7 + CLS
  void configure(ModelConfig& cfg) const override {
    cfg.vocab_size = 0;
    cfg.n_classes = 10;
    cfg.patch = 7;
    cfg.image = 28;
    cfg.context = 17;
  }
};
}  // namespace

std::unique_ptr<TaskData> make_task(const TaskOptions& o) {
  if (o.task == "lm") {
    // No --data: the default corpus (docs/DESIGN.md section 7); the name printed says which one it was.
    const bool default_corpus = o.data.empty();
    const std::string path = default_corpus ? default_corpus_dir() : o.data;
    struct stat st;
    if (default_corpus && ::stat(path.c_str(), &st) != 0) missing_default_corpus(path);
    int files = 0;
    std::string corpus = read_corpus(path, &files);
    check(!corpus.empty(), "--data ", path, " is empty");
    std::string name = path;
    if (default_corpus || files > 1)
      name += std::string(" (") + (default_corpus ? "the default corpus: " : "") + std::to_string(files) +
              " files, " + std::to_string(corpus.size()) + " bytes)";
    return std::make_unique<LMTask>(path, name, corpus, ByteTokenizer::from_corpus(corpus), o.context);
  }
  if (o.task == "fmnist") {
    check(fashion_mnist_available(o.data_dir), "Fashion-MNIST files not found in ", o.data_dir,
          " (install Debian's dataset-fashion-mnist, or pass --data-dir)");
    return std::make_unique<FashionMnistTask>(load_fashion_mnist(o.data_dir));
  }
  if (is_synthetic_task(o.task)) {
    SyntheticTask t = parse_task(o.task);
    check(o.seq_len >= 2, "--seq-len must be at least 2, got ", o.seq_len);
    return std::make_unique<SyntheticTaskData>(
        t, make_synthetic_splits(t, o.seq_len, o.seed, o.train_size, o.test_size));
  }
  fail("unknown task '", o.task, "'; valid: lm, reverse, sort, sub, swap, copy, fmnist");
}

std::unique_ptr<TaskData> make_task_for(const ModelConfig& cfg, const TaskOptions& o0) {
  TaskOptions o = o0;
  o.task = cfg.task;
  if (cfg.task == "lm") {
    // Without --data: the corpus the checkpoint was trained on, as its config records it ("data").
    const std::string path = o.data.empty() ? cfg.data : o.data;
    check(!path.empty(), "an LM checkpoint is scored on a text file: pass --data FILE");
    std::string corpus = read_corpus(path);
    check(!corpus.empty(), "--data ", path, " is empty");
    return std::make_unique<LMTask>(path, path, corpus, ByteTokenizer::from_vocab(cfg.vocab), cfg.context);
  }
  if (is_synthetic_task(cfg.task)) o.seq_len = cfg.context;
  return make_task(o);
}

}  // namespace qkvlab
