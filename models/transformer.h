// The three models of the paper's experiments, each taking any attention variant:
//   GPT      causal LM: token + learned position embeddings, pre-LN blocks, final LayerNorm, head tied to tok_emb
//   Encoder  synthetic tasks: the same blocks without the causal mask, a per-token 10-way classifier
//   ViT      Fashion-MNIST: patch embedding, CLS token, position embedding, encoder blocks, classifier on CLS
// Parameter names follow docs/DESIGN.md section 6 (tok_emb.weight, blocks.0.attn.q.weight, ...).
#pragma once
#include <memory>
#include <vector>

#include "models/config.h"
#include "nn/attention/registry.h"

namespace qkvlab {

// Pre-LN transformer block: x += attn(ln1(x)); x += mlp(ln2(x)).
struct Block : Module {
  LayerNorm ln1;
  std::unique_ptr<Attention> attn;
  LayerNorm ln2;
  MLP mlp;
  Block(const ModelConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x, LayerKVCache* cache = nullptr, AttentionMaps* maps = nullptr);
  std::string type_name() const override { return "Block"; }
};

// What every model shares: its config, the blocks, and the generator that drives dropout.
//
// Initialisation (config.init; docs/RESULTS.md, "What the init does to the verdict"). Every layer first draws
// GPT-2 style (N(0, 0.02) weights, zero biases); then init_weights() redraws, in registration order, from the same
// generator:
//   torch  PyTorch's module defaults, the authors' synthetic code: every Linear's weight AND bias ~ U(-1/sqrt(in),
//          1/sqrt(in)); the Encoder's digits go one-hot through a Linear(vocab, d) with bias (tok_emb.weight and
//          tok_emb.bias, U(-1/sqrt(vocab), ..)); other embeddings N(0, 1) (nn.Embedding's default), except the ViT's
//          position embedding and CLS token, which stay N(0, 0.02) as in the authors' vision code. LayerNorm 1 / 0.
//   gpt2   nothing redrawn (the authors' LM code).
// Under torch the position embedding starts 4-5x the token signal (std 1 against 0.18 for a digit's weight row,
// 0.26 with the bias); under gpt2 the two start equal. Then the (X)+ weights w (config.pe_init): normal N(0, 0.02),
// identity 1/m, negative -1/m.
class TransformerModel : public Module {
 public:
  TransformerModel(const ModelConfig& cfg, uint64_t seed);  // weights are drawn from generator() seeded here
  const ModelConfig& config() const { return cfg_; }
  Generator& generator() { return gen_; }
  std::vector<std::unique_ptr<Block>> blocks;
  // Runs the blocks over x (B,T,C); maps, when given, receives one AttentionMaps per layer.
  Tensor run_blocks(Tensor x, KVCache* cache, std::vector<AttentionMaps>* maps);
  // Recompute each block's activations in backward instead of keeping them (autograd/recompute.h): a `small`
  // GPT step keeps ~10 MB of block inputs instead of ~160 MB of activations, for one more forward of the blocks.
  // Off by default; a run-time choice (train --recompute), not part of the config or the checkpoint.
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }

 protected:
  void build_blocks();  // makes and registers blocks.0 .. blocks.{n_layers-1}
  void init_weights();  // the redraws above; the last thing each model's constructor does
  ModelConfig cfg_;
  Generator gen_;
  bool recompute_ = false;
};

struct GPT : TransformerModel {
  Embedding tok_emb, pos_emb;
  LayerNorm ln_f;
  GPT(const ModelConfig& cfg, uint64_t seed);
  // ids int64 (B, T) -> logits (B, T, V). With a cache, ids are the new positions after those cached.
  Tensor forward(const Array& ids, KVCache* cache = nullptr, std::vector<AttentionMaps>* maps = nullptr);
  std::string type_name() const override { return "GPT"; }
};

struct Encoder : TransformerModel {
  Embedding tok_emb, pos_emb;
  LayerNorm ln_f;
  Linear head;
  Encoder(const ModelConfig& cfg, uint64_t seed);
  // ids int64 (B, T) digits -> logits (B, T, n_classes), one prediction per position
  Tensor forward(const Array& ids, std::vector<AttentionMaps>* maps = nullptr);
  std::string type_name() const override { return "Encoder"; }
};

struct ViT : TransformerModel {
  Linear patch_emb;
  Tensor cls_token;  // (1, 1, d)
  Embedding pos_emb;
  LayerNorm ln_f;
  Linear head;
  ViT(const ModelConfig& cfg, uint64_t seed);
  // images float (B, 1, H, W) -> logits (B, n_classes)
  Tensor forward(const Array& images, std::vector<AttentionMaps>* maps = nullptr);
  std::string type_name() const override { return "ViT"; }
};

// (B, 1, H, W) -> (B, (H/p)*(W/p), p*p): non-overlapping patches in row-major order.
Array patchify(const Array& images, int64_t patch);

// Sum of the (X)+ mixing weights w of each layer (the learned temperature on S); empty without the bias.
std::vector<double> pe_temperatures(const TransformerModel& model);

// Builds the model the config describes (GPT, Encoder or ViT) with weights from `seed`.
std::unique_ptr<TransformerModel> make_model(const ModelConfig& cfg, uint64_t seed);

// The model's output for a batch, (B,T,classes) or (B,classes). x: ids (B,T) or images.
// examples_per_forward > 0 (evaluation, without gradients): the forward runs on pieces of about that many
// examples (near-equal, never a single one), with the same bits as one forward of the batch.
Tensor model_logits(TransformerModel& model, const Array& x, int64_t examples_per_forward = 0);

// The model's loss on a batch and its main metric, from model_logits. y: targets (B,T) or labels (B).
struct StepResult {
  Tensor loss;
  double accuracy = 0.0;  // token accuracy (Encoder, GPT next-byte) or image accuracy (ViT)
};
StepResult model_loss(TransformerModel& model, const Array& x, const Array& y, int64_t examples_per_forward = 0);

// Parameter count of a GPT with this config, in closed form (no weights are made): used by `qkvlab cache`
// for the paper's 300M and 1.2B configurations. Tests check it equals num_parameters() of built models.
int64_t gpt_parameter_count(const ModelConfig& cfg);
int64_t attention_parameter_count(const ModelConfig& cfg);  // one layer's attention (incl. output projection)
// The KV cache's bytes per token for the whole model, from the variant's row (registry.h):
//   layers x (cached tensors: 2, or 1 when V is K) x KV heads x head dim x bytes per element
// (4 for the float32 qkvlab stores; the paper's Table 7 counts bf16, 2).
int64_t kv_bytes_per_token(const ModelConfig& cfg, int64_t bytes_per_element);

}  // namespace qkvlab
