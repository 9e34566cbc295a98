// The authors' synthetic set-up (issue 16): the torch init (PyTorch module defaults, a one-hot Linear input, N(0, 1)
// position embeddings), the gpt2 init kept for the LM, the (X)+ weights' three starts, the recipe's step count
// (2 epochs of 10,000 at batch 128 with partial batches = 158) and its LR schedule, and the config records.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/model_flags.h"
#include "models/data.h"
#include "models/task.h"
#include "models/trainer.h"
#include "models/transformer.h"
#include "nn/optim.h"

using namespace qkvlab;

namespace {

ModelConfig synthetic_config(const std::string& init, const std::string& variant = "single+",
                             const std::string& pe_init = "") {
  ModelConfig c;
  c.task = "reverse";
  c.variant = parse_variant(variant);
  c.d_model = 64, c.n_layers = 2, c.n_heads = 2, c.context = 16, c.vocab_size = 10, c.n_classes = 10;
  c.init = init;
  c.pe_init = pe_init;
  return c;
}

struct Stats {
  double mean = 0, std = 0, max_abs = 0;
};
Stats stats(const Tensor& t) {
  std::vector<double> v = t.data().to_vector();
  Stats s;
  for (double x : v) s.mean += x / double(v.size());
  for (double x : v) {
    s.std += (x - s.mean) * (x - s.mean) / double(v.size());
    s.max_abs = std::max(s.max_abs, std::abs(x));
  }
  s.std = std::sqrt(s.std);
  return s;
}

Tensor param(const Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return t;
  FAIL("no parameter " << name);
  return {};
}
bool has_param(const Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_parameters())
    if (n == name) return true;
  return false;
}

// U(-b, b): every value inside, the range used (max near b), the std of a uniform (b / sqrt(3)).
void check_uniform(const Tensor& t, double bound, const std::string& what) {
  INFO(what << " bound " << bound);
  Stats s = stats(t);
  CHECK(s.max_abs <= bound);
  CHECK(s.max_abs > 0.8 * bound);
  if (t.numel() >= 256) CHECK(s.std == Approx(bound / std::sqrt(3.0)).epsilon(0.1));
}

}  // namespace

TEST_CASE("torch init: every Linear's weight and bias U(-1/sqrt(in), 1/sqrt(in))", "[init]") {
  Encoder m(synthetic_config("torch"), 3);
  int linears = 0;
  for (auto& [name, mod] : m.named_modules()) {
    const auto* lin = dynamic_cast<const Linear*>(mod);
    if (!lin) continue;
    ++linears;
    const double bound = 1.0 / std::sqrt(double(lin->in_features));
    check_uniform(lin->weight, bound, name + ".weight");
    check_uniform(lin->bias, bound, name + ".bias");  // PyTorch draws biases too; GPT-2 style would be zeros
  }
  CHECK(linears == 2 * (2 + 2) + 1);  // per block: k and o of Q=K=V, fc and proj; then the head
  // The MLP's second layer has fan-in 4d = 256: bound 1/16, half the first layer's 1/8.
  CHECK(stats(param(m, "blocks.0.mlp.proj.weight")).max_abs <= 1.0 / 16.0);
  CHECK(stats(param(m, "blocks.0.mlp.fc.weight")).max_abs > 1.0 / 16.0);
}

TEST_CASE("torch init: the digits go one-hot through a Linear(10, d) with bias; positions N(0, 1)", "[init]") {
  Encoder m(synthetic_config("torch"), 5);
  REQUIRE(has_param(m, "tok_emb.bias"));
  check_uniform(m.tok_emb.weight, 1.0 / std::sqrt(10.0), "tok_emb.weight");
  check_uniform(m.tok_emb.bias, 1.0 / std::sqrt(10.0), "tok_emb.bias");
  Stats pos = stats(m.pos_emb.weight);  // 16 x 64 = 1,024 draws: std within a few % of 1
  CHECK(pos.std == Approx(1.0).epsilon(0.08));
  CHECK(std::abs(pos.mean) < 0.1);
  // Token vs position scale at the start: about 0.18 against 1, the ~5:1 the authors' model starts from.
  CHECK(pos.std / stats(m.tok_emb.weight).std > 4.0);
  // LayerNorms stay 1 / 0.
  CHECK(stats(m.ln_f.weight).mean == 1.0);
  CHECK(stats(m.ln_f.weight).std == 0.0);
  CHECK(stats(m.blocks[0]->ln1.bias).max_abs == 0.0);

  // The one-hot Linear: embedding row + bias equals one_hot(id) @ W^T + b.
  Array ids = Array::from_vector(std::vector<int64_t>{3, 0, 9}, {1, 3});
  Array e = m.tok_emb(ids).data();
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t c = 0; c < 64; c += 7) {
      int64_t id = ids.at({0, t}) > 0 ? int64_t(ids.at({0, t})) : 0;
      double want = m.tok_emb.weight.data().at({id, c}) + m.tok_emb.bias.data().at({c});
      CHECK(e.at({0, t, c}) == Approx(want).margin(1e-6));
    }
}

TEST_CASE("gpt2 init: N(0, 0.02) weights, zero biases, no input bias; the LM and old checkpoints default to it",
          "[init]") {
  Encoder m(synthetic_config("gpt2"), 3);
  CHECK_FALSE(has_param(m, "tok_emb.bias"));
  CHECK(stats(m.pos_emb.weight).std == Approx(0.02).epsilon(0.1));
  CHECK(stats(param(m, "blocks.0.attn.k.weight")).std == Approx(0.02).epsilon(0.1));
  CHECK(stats(param(m, "blocks.0.attn.k.bias")).max_abs == 0.0);
  // Defaults per task, filled in by resolve().
  ModelConfig syn = synthetic_config("");
  syn.resolve();
  CHECK(syn.init == "torch");
  CHECK(syn.pe_init == "normal");
  ModelConfig lm = gpt_preset("tiny");
  lm.vocab_size = 65;
  lm.resolve();
  CHECK(lm.init == "gpt2");
  ModelConfig bad = synthetic_config("xavier");
  CHECK_THROWS_WITH(bad.resolve(), Catch::Matchers::Contains("unknown init 'xavier'"));
}

TEST_CASE("pe-init: normal N(0, 0.02), identity sum w = +1, negative sum w = -1", "[init]") {
  {
    Encoder m(synthetic_config("torch", "single+", "normal"), 1);
    std::vector<double> t = pe_temperatures(m);
    REQUIRE(t.size() == 2);  // one per layer
    Tensor w = param(m, "blocks.0.attn.pe.weight");
    Stats s = stats(w);
    CHECK(s.std > 0.005);
    CHECK(s.std < 0.06);
    CHECK(std::abs(t[0]) < 0.3);  // 10 draws of N(0, 0.02): the sum is about +-0.06
    CHECK(t[0] != t[1]);
  }
  for (auto [mode, sum] : {std::pair<const char*, double>{"identity", 1.0}, {"negative", -1.0}}) {
    Encoder m(synthetic_config("torch", "single+", mode), 1);
    for (double t : pe_temperatures(m)) CHECK(t == Approx(sum).margin(1e-6));
    CHECK(stats(param(m, "blocks.1.attn.pe.weight")).std < 1e-7);  // all w equal
  }
  Encoder plain(synthetic_config("torch", "single"), 1);
  CHECK(pe_temperatures(plain).empty());
}

TEST_CASE("config: init, pe_init and recipe are stored; a config without them reads as gpt2 / identity", "[init]") {
  ModelConfig c = synthetic_config("torch", "single+", "negative");
  c.recipe = R"({"batch":128,"steps":158})";
  c.resolve();
  auto j = nlohmann::json::parse(c.to_json());
  CHECK(j["init"] == "torch");
  CHECK(j["pe_init"] == "negative");
  CHECK(j["recipe"]["steps"] == 158);
  ModelConfig back = ModelConfig::from_json(c.to_json());
  CHECK(back.init == "torch");
  CHECK(back.pe_init == "negative");
  CHECK(back.to_json() == c.to_json());
  j.erase("init");
  j.erase("pe_init");
  j.erase("recipe");
  ModelConfig old = ModelConfig::from_json(j.dump());
  CHECK(old.init == "gpt2");
  CHECK(old.pe_init == "identity");
  CHECK(old.recipe.empty());
  auto m = make_model(old, 0);  // builds the old architecture: no input bias
  CHECK_FALSE(has_param(*m, "tok_emb.bias"));
}

TEST_CASE("recipe: the synthetic default is 2 epochs of 10,000 at batch 128 counting partial batches = 158 steps",
          "[init][recipe]") {
  app::ModelFlags mf;
  mf.task = "reverse";
  app::TrainFlags tf;
  TaskOptions to = app::task_options(mf, 0);
  to.train_size = 10000, to.test_size = 10;
  auto data = make_task(to);
  TrainOptions o = app::train_options(tf, mf, *data, 0);
  CHECK(o.steps == 158);  // ceil(10000 / 128) = 79 a epoch
  CHECK(o.epochs == 2);
  CHECK(o.batch == 128);
  CHECK(o.lr == 1e-3);
  CHECK(o.clip == 5.0);
  CHECK(o.min_lr_ratio == 0.0);
  CHECK(o.weight_decay == 0.0);
  CHECK(o.partial_batches);
  auto r = nlohmann::json::parse(recipe_json(o));
  CHECK(r["optimizer"] == "Adam");
  CHECK(r["steps"] == 158);
  // --steps still overrides; --clip and --min-lr-ratio override the task's defaults.
  tf.steps = 40, tf.clip = 0.5, tf.min_lr_ratio = 0.2;
  TrainOptions o2 = app::train_options(tf, mf, *data, 0);
  CHECK(o2.steps == 40);
  CHECK(o2.epochs == 0);
  CHECK(o2.clip == 0.5);
  CHECK(o2.min_lr_ratio == 0.2);
  // The LM keeps its own recipe.
  app::ModelFlags lm;
  lm.task = "lm";
  CHECK(app::train_options(app::TrainFlags{}, lm, *data, 0).clip == 1.0);
}

TEST_CASE("recipe: an epoch of 10,000 at batch 128 is 78 full batches and one of 16, each sequence once",
          "[init][recipe]") {
  EpochSampler s(10000);
  s.set_keep_last(true);
  Generator g(7);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> seen;
    for (int b = 0; b < 79; ++b) {
      std::vector<int64_t> idx = s.next(128, g);
      CHECK(int64_t(idx.size()) == (b < 78 ? 128 : 16));
      seen.insert(idx.begin(), idx.end());
    }
    CHECK(seen.size() == 10000);
  }
  CHECK(s.epoch() == 2);
  EpochSampler drop(10000);  // without keep_last the 16 left over are skipped
  for (int b = 0; b < 79; ++b) CHECK(drop.next(128, g).size() == 128);
  CHECK(drop.epoch() == 2);
}

TEST_CASE("recipe: 5 % linear warm-up, then cosine to 0 over 158 steps", "[init][recipe]") {
  const int64_t steps = 158, warmup = int64_t(0.05 * steps);  // 7, as the trainer computes it
  WarmupCosineLR lr(1e-3, warmup, steps, 0.0);
  CHECK(warmup == 7);
  for (int64_t s = 0; s < warmup; ++s) CHECK(lr.lr(s) == Approx(1e-3 * double(s + 1) / 7.0));
  CHECK(lr.lr(warmup) == Approx(1e-3));
  CHECK(lr.lr(warmup + (steps - warmup) / 2) == Approx(5e-4).epsilon(0.02));  // half way down the cosine
  for (int64_t s = warmup; s + 1 < steps; ++s) CHECK(lr.lr(s + 1) <= lr.lr(s));
  CHECK(lr.lr(steps - 1) < 1e-6);
  CHECK(lr.lr(steps - 1) > 0.0);
}
