// Checkpoints (models/checkpoint.h, docs/DESIGN.md section 6): bit-exact round trips of every model kind, a refusal
// naming the tensor and both shapes when the config and the tensors disagree, one clear Error per kind of broken
// path or file, and an exact round trip of the optimizer state (AdamW buffers, step, generators, sampler).
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/data.h"
#include "models/safetensors.h"
#include "models/task.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {

// A temporary folder for this file's tests (tests/test_util.h).
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("ckpt") {}
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::vector<uint8_t> weight_bytes(const Module& m) { return serialize_safetensors(m.state_dict()); }
// Byte blobs compare as a bool, so that a failure prints one line instead of kilobytes.
template <class A, class B>
bool same_bytes(const A& a, const B& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](auto x, auto y) {
           return static_cast<unsigned char>(x) == static_cast<unsigned char>(y);
         });
}

ModelConfig tiny(const std::string& task, const std::string& variant) {
  ModelConfig c;
  c.task = task;
  c.variant = parse_variant(variant);
  c.d_model = 16;
  c.n_heads = 4;
  c.n_layers = 2;
  if (task == "lm") {
    c.vocab = {'\n', ' ', 'a', 'b', 'c', 'd', 'e'};
    c.vocab_size = 7;
    c.context = 12;
  } else if (task == "fmnist") {
    c.vocab_size = 0;
    c.context = 17;
  } else {
    c.vocab_size = 10;
    c.context = 8;
  }
  c.resolve();
  return c;
}

// Rewrites a checkpoint with its config edited by `edit` and/or its tensors edited by `edit_tensors`.
template <class EditConfig, class EditTensors>
void rewrite(const std::string& src, const std::string& dst, EditConfig edit, EditTensors edit_tensors) {
  Safetensors st = load_safetensors(src);
  auto cfg = nlohmann::json::parse(st.metadata.at("config"));
  edit(cfg);
  st.metadata["config"] = cfg.dump();
  edit_tensors(st.tensors);
  save_safetensors(dst, st.tensors, st.metadata);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("checkpoint round trip is bit-exact for GPT, Encoder and ViT", "[checkpoint]") {
  TempDir tmp;
  struct Case {
    std::string task, variant, kind;
  };
  for (const Case& c : {Case{"lm", "qkv", "GPT"}, Case{"lm", "kv-gqa:2+", "GPT"}, Case{"lm", "single", "GPT"},
                        Case{"reverse", "qk+", "Encoder"}, Case{"sort", "mqa", "Encoder"},
                        Case{"fmnist", "kv", "ViT"}}) {
    INFO(c.task << " " << c.variant);
    ModelConfig cfg = tiny(c.task, c.variant);
    auto model = make_model(cfg, 17);
    CHECK(model->type_name() == c.kind);
    const std::string dir = tmp.sub(c.task + "_" + std::to_string(cfg.n_layers) + "_" + cfg.variant.id());
    save_model(dir + "/model.safetensors", *model);

    // the directory and the file both work
    for (const std::string& ckpt : {dir, dir + "/", dir + "/model.safetensors"}) {
      auto loaded = load_model(ckpt);
      CHECK(loaded->type_name() == c.kind);
      CHECK(loaded->config().to_json() == cfg.to_json());
      CHECK(same_bytes(weight_bytes(*loaded), weight_bytes(*model)));
      CHECK(read_config(ckpt).to_json() == cfg.to_json());
    }
    // Saving what was loaded gives the same file, byte for byte.
    auto loaded = load_model(dir);
    save_model(tmp.file("again.safetensors"), *loaded);
    CHECK(same_bytes(slurp(tmp.file("again.safetensors")), slurp(dir + "/model.safetensors")));
    // The weights are real numbers that differ from a fresh model (a round trip of zeros would prove little).
    CHECK(!same_bytes(weight_bytes(*make_model(cfg, 18)), weight_bytes(*model)));
  }
}

TEST_CASE("checkpoint metadata follows docs/DESIGN.md section 6", "[checkpoint]") {
  TempDir tmp;
  ModelConfig cfg = tiny("lm", "kv-gqa:2");
  auto model = make_model(cfg, 1);
  save_model(tmp.file("m.safetensors"), *model);
  Safetensors st = load_safetensors(tmp.file("m.safetensors"));
  auto j = nlohmann::json::parse(st.metadata.at("config"));
  CHECK(j["task"] == "lm");
  CHECK(j["variant"] == "kv-gqa:2");
  CHECK(j["d_model"] == 16);
  CHECK(j["n_layers"] == 2);
  CHECK(j["n_heads"] == 4);
  CHECK(j["kv_heads"] == 2);
  CHECK(j["context"] == 12);
  CHECK(j["vocab_size"] == 7);
  CHECK(j["pe_channels"] == 0);
  CHECK(j["vocab"] == std::vector<int>{'\n', ' ', 'a', 'b', 'c', 'd', 'e'});
  // Q-K=V has q and k, no v; the output head is tied (no separate head tensor).
  CHECK(st.has("tok_emb.weight"));
  CHECK(st.has("pos_emb.weight"));
  CHECK(st.has("blocks.1.attn.q.weight"));
  CHECK(st.has("blocks.1.attn.k.bias"));
  CHECK(!st.has("blocks.0.attn.v.weight"));
  CHECK(st.has("blocks.0.mlp.fc.weight"));
  CHECK(st.has("ln_f.bias"));
  CHECK(st.get("blocks.0.attn.k.weight").shape() == Shape{8, 16});  // 2 KV heads x head dim 4
}

TEST_CASE("a checkpoint whose config disagrees with its tensors is refused, naming the tensor and both shapes",
          "[checkpoint]") {
  TempDir tmp;
  ModelConfig cfg = tiny("lm", "qkv");
  auto model = make_model(cfg, 3);
  const std::string good = tmp.file("good.safetensors");
  save_model(good, *model);
  auto keep = [](NamedArrays&) {};
  auto same = [](nlohmann::json&) {};

  SECTION("config says d_model 32, tensors are 16 wide") {
    rewrite(good, tmp.file("bad.safetensors"), [](nlohmann::json& j) { j["d_model"] = 32; }, keep);
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains(tmp.file("bad.safetensors")));
    CHECK_THAT(msg, Contains("tok_emb.weight"));
    CHECK_THAT(msg, Contains("(7,32)"));  // expected
    CHECK_THAT(msg, Contains("(7,16)"));  // found
  }
  SECTION("config says 3 layers, the file has 2") {
    rewrite(good, tmp.file("bad.safetensors"), [](nlohmann::json& j) { j["n_layers"] = 3; }, keep);
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains("blocks.2.") && Contains("missing"));
  }
  SECTION("a tensor is dropped") {
    rewrite(good, tmp.file("bad.safetensors"), same, [](NamedArrays& t) {
      std::erase_if(t, [](auto& p) { return p.first == "blocks.1.attn.v.weight"; });
    });
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains("blocks.1.attn.v.weight") && Contains("missing") && Contains("(16,16)"));
  }
  SECTION("a tensor has the wrong shape") {
    rewrite(good, tmp.file("bad.safetensors"), same, [](NamedArrays& t) {
      for (auto& [n, a] : t)
        if (n == "blocks.0.mlp.fc.weight") a = Array::zeros({64, 8});
    });
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains("blocks.0.mlp.fc.weight") && Contains("(64,16)") && Contains("(64,8)"));
  }
  SECTION("config says Q-K=V, the tensors have a v projection") {
    rewrite(good, tmp.file("bad.safetensors"), [](nlohmann::json& j) { j["variant"] = "kv"; }, keep);
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains("attn.v.weight") && Contains("(16,16)") && Contains("unexpected"));
  }
  SECTION("config kv_heads contradicts the variant") {
    rewrite(good, tmp.file("bad.safetensors"), [](nlohmann::json& j) { j["kv_heads"] = 2; }, keep);
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains("kv_heads 2") && Contains(tmp.file("bad.safetensors")));
  }
  SECTION("config without a field") {
    rewrite(good, tmp.file("bad.safetensors"), [](nlohmann::json& j) { j.erase("n_heads"); }, keep);
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    CHECK_THAT(msg, Contains("missing field 'n_heads'"));
  }
  SECTION("no config at all") {
    Safetensors st = load_safetensors(good);
    save_safetensors(tmp.file("bad.safetensors"), st.tensors, {});
    std::string msg = error_of([&] { load_model(tmp.file("bad.safetensors")); });
    CHECK_THAT(msg, Contains("no __metadata__ config") && Contains(tmp.file("bad.safetensors")));
  }
}

TEST_CASE("broken checkpoint paths and files are clear Errors", "[checkpoint]") {
  TempDir tmp;
  auto model = make_model(tiny("reverse", "qkv"), 3);
  const std::string good = tmp.file("good.safetensors");
  save_model(good, *model);
  const std::string bytes = slurp(good);

  SECTION("truncated") {
    for (size_t keep : {size_t(4), size_t(40), bytes.size() / 2, bytes.size() - 1}) {
      INFO("kept " << keep << " of " << bytes.size() << " bytes");
      write(tmp.file("cut.safetensors"), bytes.substr(0, keep));
      std::string msg = error_of([&] { load_model(tmp.file("cut.safetensors")); });
      INFO(msg);
      CHECK_THAT(msg, Contains(tmp.file("cut.safetensors")));
      CHECK(msg != "(no error)");
    }
  }
  SECTION("random bytes") {
    Generator g(9);
    std::string junk(3000, '\0');
    for (char& c : junk) c = char(g.randint(0, 256));
    write(tmp.file("junk.safetensors"), junk);
    std::string msg = error_of([&] { load_model(tmp.file("junk.safetensors")); });
    INFO(msg);
    CHECK_THAT(msg, Contains(tmp.file("junk.safetensors")) && Contains("safetensors"));
  }
  SECTION("an empty file") {
    write(tmp.file("empty.safetensors"), "");
    CHECK_THAT(error_of([&] { load_model(tmp.file("empty.safetensors")); }),
               Contains(tmp.file("empty.safetensors")));
  }
  SECTION("a directory without model.safetensors") {
    const std::string dir = tmp.sub("run");
    CHECK_THAT(error_of([&] { load_model(dir); }), Contains(dir) && Contains("without model.safetensors"));
    CHECK_THAT(error_of([&] { read_config(dir); }), Contains("without model.safetensors"));
  }
  SECTION("a missing path") {
    const std::string missing = tmp.file("nope/model.safetensors");
    CHECK_THAT(error_of([&] { load_model(missing); }), Contains(missing) && Contains("does not exist"));
    CHECK_THAT(error_of([&] { load_model(""); }), Contains("no path"));
  }
  SECTION("an optimizer file given as a model") {
    AdamW opt(make_param_groups(*model, 0.0), 1e-3);
    save_training_state(tmp.file("opt.safetensors"), opt, {});
    CHECK_THAT(error_of([&] { load_model(tmp.file("opt.safetensors")); }), Contains("no __metadata__ config"));
  }
}

TEST_CASE("optimizer state round trip: AdamW buffers, step, generators and sampler are exact", "[checkpoint]") {
  TempDir tmp;
  ModelConfig cfg = tiny("reverse", "qk");
  auto model = make_model(cfg, 5);
  auto twin = make_model(cfg, 5);
  AdamW opt(make_param_groups(*model, 0.1), 1e-2);
  Generator data(77);
  auto task = make_task([] {
    TaskOptions t;
    t.task = "reverse";
    t.seq_len = 8;
    t.train_size = 50;
    t.test_size = 10;
    return t;
  }());
  auto one_step = [&](TransformerModel& m, Optimizer& o, Generator& g) {
    Array x, y;
    task->train_batch(8, g, x, y);
    StepResult r = model_loss(m, x, y);
    o.zero_grad();
    r.loss.backward();
    o.step();
  };
  for (int i = 0; i < 3; ++i) one_step(*model, opt, data);
  data.normal();  // leaves a spare normal in the generator: it must survive too
  model->generator().uniform();

  TrainingState st{opt.steps(), data.state(), model->generator().state(), task->sampler_state()};
  REQUIRE(st.sampler.size() == 3);
  const std::string path = tmp.file("optimizer.safetensors");
  save_training_state(path, opt, st);

  twin->load_state_dict(model->state_dict());
  AdamW opt2(make_param_groups(*twin, 0.1), 1e-2);
  TrainingState back = load_training_state(path, opt2);
  CHECK(back.step == 3);
  CHECK(opt2.steps() == 3);
  CHECK(same_bytes(serialize_safetensors(opt2.state()), serialize_safetensors(opt.state())));
  CHECK(opt.state().size() == 2 * model->parameters().size() + 1);  // exp_avg, exp_avg_sq per parameter, step
  CHECK(back.sampler == st.sampler);
  Generator d2, m2;
  d2.set_state(back.data_rng);
  m2.set_state(back.model_rng);
  for (int i = 0; i < 3; ++i) {
    CHECK(d2.normal() == data.normal());  // the first of these is the spare
    CHECK(m2.next_u64() == model->generator().next_u64());
  }

  // Both optimizers take the next step identically.
  Generator g1(5), g2(5);
  const std::vector<int64_t> sampler_before = task->sampler_state();
  one_step(*model, opt, g1);
  task->set_sampler_state(sampler_before);  // the same batch for the twin
  one_step(*twin, opt2, g2);
  CHECK(same_bytes(weight_bytes(*twin), weight_bytes(*model)));
  CHECK(same_bytes(serialize_safetensors(opt2.state()), serialize_safetensors(opt.state())));

  SECTION("state for a model of other shapes is refused, naming the buffer and both shapes") {
    ModelConfig wcfg = cfg;
    wcfg.d_model = 32;
    wcfg.resolve();
    auto wide = make_model(wcfg, 5);
    AdamW opt4(make_param_groups(*wide, 0.1), 1e-2);
    std::string msg = error_of([&] { load_training_state(path, opt4); });
    INFO(msg);
    CHECK_THAT(msg, Contains(path) && Contains("tok_emb.weight") && Contains("expected shape (10,32)") &&
                        Contains("got (10,16)"));
  }
  SECTION("a file without generator states is refused") {
    save_safetensors(tmp.file("partial.safetensors"), opt.state());
    CHECK_THAT(error_of([&] { load_training_state(tmp.file("partial.safetensors"), opt2); }),
               Contains("rng.data"));
  }
  SECTION("a truncated optimizer file is refused") {
    std::string b = slurp(path);
    write(tmp.file("cut.safetensors"), b.substr(0, b.size() / 2));
    CHECK_THAT(error_of([&] { load_training_state(tmp.file("cut.safetensors"), opt2); }),
               Contains(tmp.file("cut.safetensors")));
  }
}
