#include "models/config.h"

#include <nlohmann/json.hpp>

namespace qkvlab {

bool is_synthetic_task(const std::string& task) {
  return task == "reverse" || task == "sort" || task == "sub" || task == "swap" || task == "copy";
}

std::string default_init(const std::string& task) { return task == "lm" ? "gpt2" : "torch"; }

std::string ModelConfig::model_kind() const {
  if (task == "lm") return "gpt";
  if (task == "fmnist") return "vit";
  if (is_synthetic_task(task)) return "encoder";
  fail("unknown task '", task, "'; valid: lm, reverse, sort, sub, swap, copy, fmnist");
}

AttentionConfig ModelConfig::attention() const {
  AttentionConfig a;
  a.d_model = d_model;
  a.n_heads = n_heads;
  a.kv_heads = kv_heads;
  a.context = context;
  a.pe_channels = pe_channels;
  a.causal = model_kind() == "gpt";
  return a;
}

void ModelConfig::resolve() {
  model_kind();  // validates the task
  check(d_model > 0, "d_model must be positive, got ", d_model);
  check(n_layers > 0, "layers must be positive, got ", n_layers);
  check(n_heads > 0 && d_model % n_heads == 0, "heads (", n_heads, ") must divide d_model (", d_model, ")");
  check(context > 0, "context must be positive, got ", context);
  if (init.empty()) init = default_init(task);
  if (pe_init.empty()) pe_init = "normal";
  check(init == "torch" || init == "gpt2", "unknown init '", init, "'; valid: torch, gpt2");
  check(pe_init == "normal" || pe_init == "identity" || pe_init == "negative", "unknown pe-init '", pe_init,
        "'; valid: normal, identity, negative");
  AttentionConfig a = resolve_config(variant, attention());
  kv_heads = a.kv_heads;
  pe_channels = a.pe_channels;
  if (task == "lm") {
    check(vocab_size > 0, "an LM needs a vocabulary (vocab_size 0)");
    check(vocab.empty() || int64_t(vocab.size()) == vocab_size, "vocab has ", vocab.size(),
          " bytes but vocab_size is ", vocab_size);
  }
  if (model_kind() == "vit") {
    check(patch > 0 && image % patch == 0, "patch ", patch, " must divide the image side ", image);
    int64_t n = (image / patch) * (image / patch) + 1;
    check(context == n, "ViT context must be patches + 1 = ", n, ", got ", context);
  }
}

std::string ModelConfig::to_json() const {
  nlohmann::ordered_json j;
  j["task"] = task;
  j["variant"] = variant.id();
  j["paper_name"] = variant.paper_name();
  j["d_model"] = d_model;
  j["n_layers"] = n_layers;
  j["n_heads"] = n_heads;
  j["kv_heads"] = kv_heads;
  j["context"] = context;
  j["vocab_size"] = vocab_size;
  j["pe_channels"] = pe_channels;
  j["ffn"] = hidden();
  j["n_classes"] = n_classes;
  if (task == "fmnist") {
    j["patch"] = patch;
    j["image"] = image;
  }
  j["dropout"] = dropout;
  if (task == "lm") j["vocab"] = vocab;
  j["init"] = init.empty() ? default_init(task) : init;
  j["pe_init"] = pe_init.empty() ? "normal" : pe_init;
  if (!recipe.empty()) {
    try {
      j["recipe"] = nlohmann::ordered_json::parse(recipe);
    } catch (const std::exception&) {
      fail("model config: the recipe is not JSON: ", recipe);
    }
  }
  if (task == "lm" && !data.empty()) j["data"] = data;
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail("checkpoint config: not valid JSON (", e.what(), ")");
  }
  check(j.is_object(), "checkpoint config: expected a JSON object");
  ModelConfig c;
  auto need = [&](const char* key) -> const nlohmann::json& {
    check(j.contains(key), "checkpoint config: missing field '", key, "'");
    return j[key];
  };
  auto integer = [&](const char* key) -> int64_t {
    const auto& v = need(key);
    check(v.is_number_integer(), "checkpoint config: field '", key, "' must be an integer");
    return v.get<int64_t>();
  };
  try {
    const auto& task = need("task");
    check(task.is_string(), "checkpoint config: field 'task' must be a string");
    c.task = task.get<std::string>();
    const auto& var = need("variant");
    check(var.is_string(), "checkpoint config: field 'variant' must be a string");
    c.variant = parse_variant(var.get<std::string>());
    c.d_model = integer("d_model");
    c.n_layers = integer("n_layers");
    c.n_heads = integer("n_heads");
    c.kv_heads = integer("kv_heads");
    c.context = integer("context");
    c.vocab_size = integer("vocab_size");
    c.pe_channels = integer("pe_channels");
    if (j.contains("ffn")) c.ffn = integer("ffn");
    if (j.contains("n_classes")) c.n_classes = integer("n_classes");
    if (j.contains("patch")) c.patch = integer("patch");
    if (j.contains("image")) c.image = integer("image");
    if (j.contains("dropout") && j["dropout"].is_number()) c.dropout = j["dropout"].get<double>();
    // Checkpoints from before these fields were initialised GPT-2 style with w = 1/m (ModelConfig).
    auto text = [&](const char* key, const char* old) -> std::string {
      if (!j.contains(key)) return old;
      check(j[key].is_string(), "checkpoint config: field '", key, "' must be a string");
      return j[key].get<std::string>();
    };
    c.init = text("init", "gpt2");
    c.pe_init = text("pe_init", "identity");
    if (j.contains("recipe")) {
      check(j["recipe"].is_object(), "checkpoint config: field 'recipe' must be an object");
      c.recipe = j["recipe"].dump();
    }
    if (c.task == "lm") {
      const auto& v = need("vocab");
      check(v.is_array(), "checkpoint config: field 'vocab' must be a list of byte values");
      for (const auto& b : v) {
        check(b.is_number_integer() && b.get<int64_t>() >= 0 && b.get<int64_t>() <= 255,
              "checkpoint config: 'vocab' must hold byte values 0..255");
        c.vocab.push_back(b.get<int>());
      }
      if (j.contains("data") && j["data"].is_string()) c.data = j["data"].get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint config: ", e.what());
  }
  int64_t stored_kv = c.kv_heads, stored_pe = c.pe_channels;
  c.resolve();
  check(c.kv_heads == stored_kv, "checkpoint config: kv_heads ", stored_kv, " contradicts variant ", c.variant.id(),
        " with ", c.n_heads, " heads");
  check((stored_pe > 0) == c.variant.pos_bias, "checkpoint config: pe_channels ", stored_pe,
        " contradicts variant ", c.variant.id());
  c.pe_channels = stored_pe;
  return c;
}

namespace {
// One row a preset (models/config.h): the model's shape. ffn 0 = 4 x d_model; vocab_size 0 = the data's.
struct Preset {
  const char* name;
  int64_t context, d_model, n_heads, n_layers, ffn, vocab_size;
};
const Preset kGptPresets[] = {
    {"tiny", 64, 64, 4, 2, 0, 0},
    {"small", 128, 128, 4, 4, 0, 0},
};
const Preset kPaperLmPresets[] = {  // vocabulary: GPT-2's padded to a multiple of 64, as in the paper
    {"300M", 2048, 1024, 16, 20, 4096, 50304},
    {"1.2B", 2048, 2048, 32, 22, 8192, 50304},
};

template <size_t N>
ModelConfig preset_from(const Preset (&table)[N], const std::string& name) {
  std::string valid;
  for (const Preset& p : table) {
    if (name == p.name) {
      ModelConfig c;
      c.task = "lm";
      c.context = p.context, c.d_model = p.d_model, c.n_heads = p.n_heads, c.n_layers = p.n_layers;
      c.ffn = p.ffn, c.vocab_size = p.vocab_size;
      return c;
    }
    valid += (valid.empty() ? "" : ", ") + std::string(p.name);
  }
  fail("unknown preset '", name, "'; valid: ", valid);
}
}  // namespace

ModelConfig gpt_preset(const std::string& name) { return preset_from(kGptPresets, name); }

ModelConfig paper_lm_preset(const std::string& name) { return preset_from(kPaperLmPresets, name); }

}  // namespace qkvlab
