// The training loop end to end (models/trainer.h): exact resume (the loss trajectory of 200 steps equals 100 +
// resume + 100, bit for bit, for an epoch sampler and for random LM windows), determinism, the NaN stop and the
// checkpoint it keeps, and sampling with and without the KV cache (models/generate.h) from a trained-a-little GPT.
// Everything runs on one thread (the guarantee is "same seed and same thread count") on tiny models.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <stdlib.h>

#include <cmath>
#include <algorithm>
#include <filesystem>
#include <set>
#include <fstream>
#include <iterator>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/data.h"
#include "models/generate.h"
#include "models/safetensors.h"
#include "models/trainer.h"
#include "tensor/parallel.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {

// A temporary folder for this file's tests (tests/test_util.h).
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("trainer") {}
};

// One kernel thread for the test's duration: results are only promised equal for the same thread count.
struct OneThread : testing::ThreadCount {
  OneThread() : testing::ThreadCount(1) {}
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The exact bytes of every tensor (with names and shapes): equal vectors = bit-identical weights.
std::vector<uint8_t> weight_bytes(const Module& m) { return serialize_safetensors(m.state_dict()); }
// Byte blobs compare as a bool, so that a failure prints one line instead of kilobytes.
template <class A, class B>
bool same_bytes(const A& a, const B& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](auto x, auto y) {
           return static_cast<unsigned char>(x) == static_cast<unsigned char>(y);
         });
}


// The model config a task implies, with a tiny transformer.
ModelConfig tiny_config(const TaskData& data, const std::string& task, const std::string& variant,
                        int64_t d_model = 16, int64_t heads = 2, int64_t layers = 1) {
  ModelConfig c;
  c.task = task;
  c.variant = parse_variant(variant);
  c.d_model = d_model;
  c.n_heads = heads;
  c.n_layers = layers;
  data.configure(c);
  c.resolve();
  return c;
}

TaskOptions synthetic_task() {
  TaskOptions t;
  t.task = "reverse";
  t.seq_len = 8;
  t.train_size = 200;  // 12 batches of 16 per epoch: 200 steps cross 16 epochs, step 100 is mid-epoch
  t.test_size = 64;
  t.seed = 3;
  return t;
}

TaskOptions lm_task(const std::string& file) {
  TaskOptions t;
  t.task = "lm";
  t.data = file;
  t.context = 16;
  return t;
}

TrainOptions base_options(int64_t steps, uint64_t seed) {
  TrainOptions o;
  o.steps = steps;
  o.batch = 16;
  o.lr = 3e-3;
  o.seed = seed;
  o.eval_examples = 32;
  o.log_every = 50;  // divides the stop point, so the logged windows of both runs are the same
  o.verbose = false;
  return o;
}

struct Run {
  TrainResult result;
  std::vector<uint8_t> weights;
};

// One "process": a fresh task and a fresh model, as `qkvlab train` would build them.
Run train_once(const TaskOptions& task, const std::string& variant, const TrainOptions& opts, uint64_t model_seed) {
  auto data = make_task(task);
  auto model = make_model(tiny_config(*data, task.task, variant), model_seed);
  Run r;
  r.result = train_model(*model, *data, opts);
  r.weights = weight_bytes(*model);
  return r;
}

// step -> loss of the "loss" lines of a metrics.jsonl
std::map<int64_t, double> logged_losses(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

// 200 steps in one go against 100 steps, a stop, and a resume (fresh task and model) for 100 more.
void check_resume_is_exact(const TaskOptions& task, const std::string& variant) {
  OneThread one;
  TempDir tmp;
  const std::string straight_dir = tmp.sub("straight"), split_dir = tmp.sub("split");

  TrainOptions o = base_options(200, 11);
  o.out_dir = straight_dir;
  Run straight = train_once(task, variant, o, 11);
  REQUIRE(straight.result.steps == 200);
  REQUIRE(!straight.result.interrupted);
  REQUIRE(straight.result.losses.size() == 200);

  o.out_dir = split_dir;
  o.stop_after = 100;
  Run first = train_once(task, variant, o, 11);
  REQUIRE(first.result.interrupted);
  REQUIRE(first.result.steps == 100);
  REQUIRE(first.result.losses.size() == 100);
  {
    auto m = load_model(split_dir);  // the checkpoint written at the stop is loadable
    CHECK(same_bytes(weight_bytes(*m), first.weights));
  }

  o.stop_after = 0;
  o.resume = true;
  Run second = train_once(task, variant, o, 999);  // another init seed: every weight must come from the checkpoint
  REQUIRE(!second.result.interrupted);
  REQUIRE(second.result.steps == 200);
  REQUIRE(second.result.losses.size() == 100);
  CHECK(second.result.losses.front().first == 101);

  std::vector<std::pair<int64_t, double>> joined = first.result.losses;
  joined.insert(joined.end(), second.result.losses.begin(), second.result.losses.end());
  REQUIRE(joined.size() == straight.result.losses.size());
  int mismatches = 0, first_mismatch = -1;
  for (size_t i = 0; i < joined.size(); ++i)
    if (joined[i] != straight.result.losses[i]) {  // exact: step and the loss's every bit
      if (first_mismatch < 0) first_mismatch = int(i);
      ++mismatches;
    }
  INFO("first differing step: " << first_mismatch + 1);
  CHECK(mismatches == 0);
  // The losses moved (a trajectory of constants would prove nothing).
  CHECK(straight.result.losses.front().second != straight.result.losses.back().second);

  CHECK(same_bytes(second.weights, straight.weights));
  CHECK(same_bytes(slurp(split_dir + "/model.safetensors"), slurp(straight_dir + "/model.safetensors")));
  CHECK(same_bytes(slurp(split_dir + "/optimizer.safetensors"), slurp(straight_dir + "/optimizer.safetensors")));
  CHECK(second.result.eval.loss == straight.result.eval.loss);
  CHECK(second.result.eval.accuracy == straight.result.eval.accuracy);
  // metrics.jsonl of the resumed run tells the same story as the straight one.
  auto logged_split = logged_losses(split_dir + "/metrics.jsonl");
  auto logged_straight = logged_losses(straight_dir + "/metrics.jsonl");
  CHECK(logged_split.size() == 4);  // steps 50, 100, 150, 200
  CHECK(logged_split == logged_straight);
}

// A stand-in for Fashion-MNIST: random images and labels, with a NaN pixel in the batch of step `poison_at`
// (counted from 1 in this process). The model is a real (tiny) ViT.
class PoisonedImages : public TaskData {
 public:
  explicit PoisonedImages(int64_t poison_at) : poison_at_(poison_at) {
    Generator g(5);
    test_x_ = Array::uniform({8, 1, 28, 28}, g);
    test_y_ = labels(8, g);
  }
  std::string name() const override { return "poisoned-images"; }
  void train_batch(int64_t batch, Generator& gen, Array& x, Array& y) override {
    x = Array::uniform({batch, 1, 28, 28}, gen);
    y = labels(batch, gen);
    if (++calls_ == poison_at_) x.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  }
  EvalResult evaluate(TransformerModel& model, int64_t) override {
    NoGradGuard no_grad;
    model.eval();
    StepResult r = model_loss(model, test_x_, test_y_);
    EvalResult e;
    e.loss = r.loss.item();
    e.accuracy = r.accuracy;
    e.examples = 8;
    return e;
  }
  int64_t tokens_per_example() const override { return 17; }
  void configure(ModelConfig& cfg) const override {
    cfg.vocab_size = 0;
    cfg.n_classes = 10;
    cfg.patch = 7;
    cfg.image = 28;
    cfg.context = 17;
  }

 private:
  static Array labels(int64_t n, Generator& g) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& l : v) l = g.randint(0, 10);
    return Array::from_vector(v, {n});
  }
  int64_t poison_at_, calls_ = 0;
  Array test_x_, test_y_;
};

bool all_finite(const Module& m) {
  for (auto& [name, a] : m.state_dict())
    for (double v : a.to_vector())
      if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("resume is exact: synthetic task (epoch sampler), 200 steps == 100 + resume + 100", "[trainer]") {
  check_resume_is_exact(synthetic_task(), "qkv");
}

TEST_CASE("resume is exact: LM task (random windows), 200 steps == 100 + resume + 100", "[trainer]") {
  TempDir tmp;
  const std::string text = tmp.file("corpus.txt");
  std::ofstream(text) << testing::english_like_text(4000, 1);
  // kv-gqa:1 with the + bias: a K-only cache layout and the learned bias parameters go through the checkpoint too.
  check_resume_is_exact(lm_task(text), "kv-mqa+");
}

TEST_CASE("resume refuses a run that is done, a different model, and a missing checkpoint", "[trainer]") {
  OneThread one;
  TempDir tmp;
  const std::string dir = tmp.sub("run");
  TrainOptions o = base_options(20, 1);
  o.out_dir = dir;
  train_once(synthetic_task(), "qkv", o, 1);

  o.resume = true;
  REQUIRE_THROWS_WITH(train_once(synthetic_task(), "qkv", o, 1), Contains("already did 20 of 20 steps"));
  o.steps = 30;
  REQUIRE_THROWS_WITH(train_once(synthetic_task(), "kv", o, 1), Contains("is a different model"));
  o.out_dir = tmp.sub("empty");
  REQUIRE_THROWS_WITH(train_once(synthetic_task(), "qkv", o, 1), Contains("no checkpoint in " + o.out_dir));
  o.out_dir = "";
  REQUIRE_THROWS_WITH(train_once(synthetic_task(), "qkv", o, 1), Contains("--resume needs --out"));
}

TEST_CASE("resume refuses weights and optimizer state of different steps (a crash between the two writes)",
          "[trainer]") {
  OneThread one;
  TempDir tmp;
  const std::string dir = tmp.sub("run");
  TrainOptions o = base_options(20, 1);
  o.out_dir = dir;
  o.stop_after = 5;
  train_once(synthetic_task(), "qkv", o, 1);
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.at("step") == "5");
  std::filesystem::copy_file(dir + "/optimizer.safetensors", tmp.file("optimizer_at_5.safetensors"));
  o.resume = true;
  train_once(synthetic_task(), "qkv", o, 1);  // to step 10
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.at("step") == "10");
  // As if the step-10 optimizer state were replaced by step 5's (by hand; or an older build, which renamed the two
  // files one after the other, killed between them): the files' steps are checked on load.
  std::filesystem::copy_file(tmp.file("optimizer_at_5.safetensors"), dir + "/optimizer.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  REQUIRE_THROWS_WITH(train_once(synthetic_task(), "qkv", o, 1),
                      Contains("is from step 10") && Contains("is from step 5") && Contains("cannot be continued"));
}

TEST_CASE("training is deterministic: same seed, same losses and checkpoint bytes; another seed differs",
          "[trainer]") {
  OneThread one;
  TempDir tmp;
  const std::string text = tmp.file("corpus.txt");
  std::ofstream(text) << testing::english_like_text(3000, 2);
  for (const TaskOptions& task : {synthetic_task(), lm_task(text)}) {
    INFO("task " << task.task);
    TrainOptions o = base_options(30, 5);
    o.out_dir = tmp.sub("a_" + task.task);
    Run a = train_once(task, "qkv", o, 5);
    o.out_dir = tmp.sub("b_" + task.task);
    Run b = train_once(task, "qkv", o, 5);
    REQUIRE(a.result.losses.size() == 30);
    CHECK(a.result.losses == b.result.losses);
    CHECK(same_bytes(a.weights, b.weights));
    CHECK(same_bytes(slurp(tmp.file("a_" + task.task + "/model.safetensors")),
                     slurp(tmp.file("b_" + task.task + "/model.safetensors"))));

    o.seed = 6;
    o.out_dir = "";
    Run c = train_once(task, "qkv", o, 6);
    REQUIRE(c.result.losses.size() == 30);
    int same = 0;
    for (size_t i = 0; i < 30; ++i) same += c.result.losses[i].second == a.result.losses[i].second;
    CHECK(same == 0);
    CHECK(!same_bytes(c.weights, a.weights));
  }
}

TEST_CASE("a diverging run stops with an Error naming the step", "[trainer]") {
  OneThread one;
  TempDir tmp;
  const std::string dir = tmp.sub("run");
  // lr 1e10: the first update throws the weights so far that the next forward pass overflows.
  TrainOptions o = base_options(50, 1);
  o.lr = 1e10;
  o.out_dir = dir;
  o.save_every = 10;
  std::string msg;
  try {
    train_once(synthetic_task(), "qkv", o, 1);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  REQUIRE_THAT(msg, Contains("training diverged"));
  std::smatch m;
  REQUIRE(std::regex_search(msg, m, std::regex("at step ([0-9]+)")));
  const int64_t step = std::stoll(m[1]);
  CHECK(step >= 1);
  CHECK(step < 10);
  // Nothing was saved before it, and the message must not claim otherwise.
  CHECK_THAT(msg, Contains("no checkpoint"));
  CHECK(!std::filesystem::exists(dir + "/model.safetensors"));
  CHECK(!std::filesystem::exists(dir + "/optimizer.safetensors"));
}

TEST_CASE("a NaN at step 7 stops the run; the checkpoint of step 5 is kept intact and loadable", "[trainer]") {
  OneThread one;
  TempDir tmp;
  const std::string dir = tmp.sub("run"), clean_dir = tmp.sub("clean");
  TrainOptions o = base_options(20, 4);
  o.batch = 4;
  o.save_every = 5;

  // The reference: the same run, cleanly stopped after 5 steps.
  {
    PoisonedImages data(0);
    auto model = make_model(tiny_config(data, "fmnist", "qkv"), 4);
    o.out_dir = clean_dir;
    o.stop_after = 5;
    TrainResult r = train_model(*model, data, o);
    REQUIRE(r.steps == 5);
  }
  PoisonedImages data(7);
  auto model = make_model(tiny_config(data, "fmnist", "qkv"), 4);
  o.out_dir = dir;
  o.stop_after = 0;
  std::string msg;
  try {
    train_model(*model, data, o);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  REQUIRE_THAT(msg, Contains("diverged") && Contains("at step 7") && Contains("step 5") && Contains(dir));

  auto saved = load_model(dir);
  CHECK(all_finite(*saved));
  CHECK(same_bytes(slurp(dir + "/model.safetensors"), slurp(clean_dir + "/model.safetensors")));
  CHECK(same_bytes(slurp(dir + "/optimizer.safetensors"), slurp(clean_dir + "/optimizer.safetensors")));
  AdamW opt(make_param_groups(*saved, 0.0), 1e-3);
  TrainingState ts = load_training_state(dir + "/optimizer.safetensors", opt);
  CHECK(ts.step == 5);
  // No torn temporary files are left beside it: the run directory of models/run_dir.h and nothing else.
  std::set<std::string> names;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    names.insert(e.path().lexically_relative(dir).string());  // relative() would resolve the links
  CHECK(names == std::set<std::string>{".lock", "checkpoint", "metrics.jsonl", "model.safetensors",
                                       "optimizer.safetensors", "step-5", "step-5/model.safetensors",
                                       "step-5/optimizer.safetensors"});
}

TEST_CASE("stop_after stops, saves, and reports an interrupted run; eval_every evaluates", "[trainer]") {
  OneThread one;
  TempDir tmp;
  TrainOptions o = base_options(40, 2);
  o.out_dir = tmp.sub("run");
  o.eval_every = 10;
  o.stop_after = 25;
  Run r = train_once(synthetic_task(), "single", o, 2);
  CHECK(r.result.interrupted);
  CHECK(r.result.steps == 25);
  REQUIRE(r.result.evals.size() == 2);  // steps 10 and 20; none at the stop
  CHECK(r.result.evals[0].first == 10);
  CHECK(r.result.evals[1].first == 20);
  CHECK(r.result.evals[1].second.examples == 32);
  CHECK(std::isfinite(r.result.evals[1].second.loss));
  AdamW opt(make_param_groups(*load_model(o.out_dir), 0.0), 1e-3);
  CHECK(load_training_state(o.out_dir + "/optimizer.safetensors", opt).step == 25);
}

TEST_CASE("generate: the KV cache changes the cost, not the tokens (greedy and sampled)", "[trainer][generate]") {
  OneThread one;
  TempDir tmp;
  const std::string text = tmp.file("corpus.txt");
  std::ofstream(text) << testing::english_like_text(3000, 3);
  TaskOptions task = lm_task(text);
  task.context = 24;
  for (std::string variant : {"kv", "mqa", "single+"}) {  // K and V cached, K only, 1 KV head, the + bias
    INFO("variant " << variant);
    auto data = make_task(task);
    ModelConfig cfg = tiny_config(*data, "lm", variant, 16, 4, 2);
    auto model = make_model(cfg, 8);
    TrainOptions o = base_options(25, 8);
    train_model(*model, *data, o);
    GPT* gpt = dynamic_cast<GPT*>(model.get());
    REQUIRE(gpt != nullptr);
    ByteTokenizer tok = ByteTokenizer::from_vocab(cfg.vocab);
    std::vector<int64_t> prompt = tok.encode("The old ");

    for (double temperature : {0.0, 0.9}) {
      INFO("temperature " << temperature);
      SampleOptions so;
      so.max_new_tokens = 10;
      so.temperature = temperature;
      so.seed = 42;
      so.use_cache = true;
      SampleResult cached = sample(*gpt, prompt, so);
      so.use_cache = false;
      SampleResult plain = sample(*gpt, prompt, so);
      REQUIRE(cached.tokens.size() == 10);
      CHECK(cached.tokens == plain.tokens);
      CHECK(cached.window_slides == 0);
      // layers x cached tensors x kv heads x head dim x 4 bytes x positions in the cache (the last token is
      // returned, never fed back)
      const int64_t positions = int64_t(prompt.size()) + 10 - 1;
      CHECK(cached.cache_bytes ==
            cfg.n_layers * cfg.variant.cached_tensors() * cfg.kv_heads * (cfg.d_model / cfg.n_heads) * 4 * positions);
      CHECK(plain.cache_bytes == 0);
    }
    // A different seed samples something else (at temperature 0.9 over ~30 bytes, 10 equal draws are unlikely).
    SampleOptions a, b;
    a.max_new_tokens = b.max_new_tokens = 12;
    a.temperature = b.temperature = 1.0;
    a.seed = 1;
    b.seed = 2;
    CHECK(sample(*gpt, prompt, a).tokens != sample(*gpt, prompt, b).tokens);
    // Past the context (24) the window slides back to its last half; both modes still agree token for token.
    for (double temperature : {0.0, 1.0}) {
      INFO("long generation, temperature " << temperature);
      SampleOptions so;
      so.max_new_tokens = 60;
      so.temperature = temperature;
      so.seed = 9;
      SampleResult cached = sample(*gpt, prompt, so);
      so.use_cache = false;
      SampleResult plain = sample(*gpt, prompt, so);
      REQUIRE(cached.tokens.size() == 60);
      CHECK(cached.tokens == plain.tokens);
      CHECK(cached.window_slides == plain.window_slides);
      // The window: 8 prompt tokens, +1 per token, cut to 12 when it reaches 24; the last token is not fed.
      int64_t window = 8, slides = 0;
      for (int i = 0; i < 60; ++i) {
        ++window;
        if (i + 1 == 60) break;
        if (window >= 24) window = 12, ++slides;
      }
      CHECK(cached.window_slides == slides);
      CHECK(cached.cache_bytes ==
            cfg.n_layers * cfg.variant.cached_tensors() * cfg.kv_heads * (cfg.d_model / cfg.n_heads) * 4 * (window - 1));
    }
  }
}

TEST_CASE("a training step leaks no tensors: the live count is the same after every step", "[trainer]") {
  // Forward, backward, clipping and AdamW make thousands of temporary tensors a step; once the step is done only
  // the parameters, their gradients and the optimizer's moments may remain. A leak of one tensor a step would
  // show here (and in peak RSS over a long run).
  auto data = make_task(synthetic_task());
  auto model = make_model(tiny_config(*data, "reverse", "kv+", 16, 2, 2), 5);
  AdamW opt(make_param_groups(*model, 0.01), 1e-3);
  Generator gen(11);
  std::vector<int64_t> live;
  for (int step = 0; step < 4; ++step) {
    Array x, y;
    data->train_batch(8, gen, x, y);
    {
      StepResult r = model_loss(*model, x, y);
      opt.zero_grad();
      r.loss.backward();
    }
    clip_grad_norm(model->parameters(), 1.0);
    opt.step();
    live.push_back(Tensor::live_count());
  }
  // The first step creates the gradients; from then on the count must not move.
  CHECK(live[1] == live[2]);
  CHECK(live[2] == live[3]);
}

// Evaluation runs the forward on a few examples at a time (model_loss's examples_per_forward) and the loss over the
// whole batch: every example's logits, so the loss and accuracy, are the same bits as one forward of the batch.
// Pieces of one example are never made (the ViT's head would multiply a single row, the GEMM's one-row path).
TEST_CASE("model_loss in pieces: the whole batch's logits, loss and accuracy, bit for bit", "[trainer]") {
  TempDir tmp;
  const std::string text = tmp.file("corpus.txt");
  std::ofstream(text) << testing::english_like_text(3000, 2);
  PoisonedImages images(0);
  for (const std::string which : {"reverse", "lm", "fmnist"}) {
    INFO(which);
    std::unique_ptr<TaskData> owned = which == "fmnist" ? nullptr : make_task(which == "lm" ? lm_task(text)
                                                                                            : synthetic_task());
    TaskData& data = owned ? *owned : static_cast<TaskData&>(images);
    auto model = make_model(tiny_config(data, which, "qkv"), 9);
    Generator gen(2);
    Array x, y;
    data.train_batch(7, gen, x, y);
    NoGradGuard no_grad;
    model->eval();
    const StepResult whole = model_loss(*model, x, y);
    for (int64_t piece : {1, 2, 3, 6}) {  // of 7: pieces 2+2+3 (not 7 of one), 2+2+3, 2+2+3, 3+4
      INFO("pieces of about " << piece);
      const StepResult parts = model_loss(*model, x, y, piece);
      CHECK(model_logits(*model, x, piece).data().to_vector() == model_logits(*model, x).data().to_vector());
      CHECK(parts.loss.item() == whole.loss.item());
      CHECK(parts.accuracy == whole.accuracy);
    }
  }
}
