// A model's configuration: everything needed to rebuild it, stored as JSON in the checkpoint's
// __metadata__["config"] (docs/DESIGN.md section 6).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/attention/registry.h"

namespace qkvlab {

struct ModelConfig {
  std::string task = "lm";      // lm | reverse | sort | sub | swap | copy | fmnist
  VariantSpec variant;
  int64_t d_model = 64;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t kv_heads = 0;         // resolved: the KV heads the attention actually has (== n_heads unless GQA/MQA)
  int64_t context = 64;         // LM: context; synthetic: sequence length; ViT: patches + 1
  int64_t vocab_size = 0;       // LM: bytes in the vocabulary; synthetic: 10 digits; ViT: unused (0)
  int64_t pe_channels = 0;      // 0 unless the variant has the (X)+ bias
  int64_t ffn = 0;              // MLP hidden size; 0 = 4 * d_model
  int64_t n_classes = 10;       // Encoder / ViT outputs
  int64_t patch = 7;            // ViT: patch side (28 / 7 = 4x4 patches)
  int64_t image = 28;           // ViT: image side
  double dropout = 0.0;
  std::vector<int> vocab;       // LM: the byte value of each token id
  // Initialisation (models/transformer.h, "init"): "torch" = PyTorch's module defaults (the authors' synthetic and
  // vision code), "gpt2" = N(0, 0.02) weights and zero biases (their LM code). "" = the task's default, filled in by
  // resolve(). A checkpoint without the field was made before the choice existed: gpt2.
  std::string init;
  // The (X)+ bias's mixing weights w at the start: "normal" N(0, 0.02) as the authors, "identity" w = 1/m (sum w =
  // +1, qkvlab's old start), "negative" w = -1/m. "" = normal; a checkpoint without the field: identity.
  std::string pe_init;
  // The training recipe the weights came from, as a JSON object (trainer.h recipe_json); "" = not recorded (a
  // checkpoint from before the field). A record only: it does not change the model, and --resume ignores it.
  std::string recipe;
  std::string data;             // LM: the corpus trained on (file or folder), so eval can default to it

  std::string model_kind() const;        // "gpt", "encoder" or "vit", from task
  int64_t hidden() const { return ffn > 0 ? ffn : 4 * d_model; }
  AttentionConfig attention() const;     // the attention layer config (causal for the GPT only)
  void resolve();                        // fills kv_heads/pe_channels from the variant, checks dims; clear errors
  std::string to_json() const;
  static ModelConfig from_json(const std::string& json);  // errors name the missing or bad field
};

bool is_synthetic_task(const std::string& task);
// The task's default init: torch for the synthetic tasks and fmnist (the authors' code), gpt2 for the LM.
std::string default_init(const std::string& task);

// GPT presets of docs/DESIGN.md section 5 (the PyTorch reference in bench/ uses the same):
//   tiny  = context 64, d 64, 4 heads, 2 layers (batch 32)
//   small = context 128, d 128, 4 heads, 4 layers (batch 32)
ModelConfig gpt_preset(const std::string& name);
// The paper's language-model configurations (its Table 7; qkvlab cache), GPT-2's vocabulary padded to 50,304 and
// context 2048: "300M" = 20 layers, d 1024, 16 heads, FFN 4096; "1.2B" = 22 layers, d 2048, 32 heads, FFN 8192.
ModelConfig paper_lm_preset(const std::string& name);

}  // namespace qkvlab
