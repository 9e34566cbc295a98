#include "models/transformer.h"

#include <cmath>

#include "autograd/recompute.h"

namespace qkvlab {

Block::Block(const ModelConfig& cfg, Generator& gen)
    : ln1(cfg.d_model), attn(make_attention(cfg.variant, cfg.attention(), gen)), ln2(cfg.d_model),
      mlp(cfg.d_model, cfg.hidden(), gen) {
  register_module("ln1", ln1);
  register_module("attn", *attn);
  register_module("ln2", ln2);
  register_module("mlp", mlp);
}

Tensor Block::forward(const Tensor& x, LayerKVCache* cache, AttentionMaps* maps) {
  Tensor h = add(x, attn->forward(ln1(x), cache, maps));  // (B,T,C)
  return add(h, mlp(ln2(h)));                             // (B,T,C)
}

TransformerModel::TransformerModel(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg), gen_(seed) { cfg_.resolve(); }

void TransformerModel::build_blocks() {
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    blocks.push_back(std::make_unique<Block>(cfg_, gen_));
    register_module("blocks." + std::to_string(i), *blocks.back());
  }
}

Tensor TransformerModel::run_blocks(Tensor x, KVCache* cache, std::vector<AttentionMaps>* maps) {
  if (cache && cache->layers.size() != blocks.size()) cache->layers.resize(blocks.size());
  if (maps) maps->assign(blocks.size(), AttentionMaps{});
  const bool recompute = recompute_ && grad_enabled() && !cache && !maps;  // only a training forward
  for (size_t i = 0; i < blocks.size(); ++i) {
    Block* block = blocks[i].get();
    if (recompute)  // keeps only x; the block runs again when backward reaches it
      x = recompute_in_backward([block](const std::vector<Tensor>& in) { return block->forward(in[0]); }, {x}, &gen_);
    else
      x = block->forward(x, cache ? &cache->layers[i] : nullptr, maps ? &(*maps)[i] : nullptr);  // (B,T,C)
  }
  return x;
}

namespace {
void redraw_uniform(const Tensor& t, Generator& gen, double bound) {
  Array a = t.data();  // shares the parameter's storage
  a.copy_(Array::uniform(a.shape(), gen, -bound, bound, a.dtype()));
}
void redraw_normal(const Tensor& t, Generator& gen, double std) {
  Array a = t.data();
  a.copy_(Array::normal(a.shape(), gen, 0.0, std, a.dtype()));
}
}  // namespace

void TransformerModel::init_weights() {
  if (cfg_.init == "torch") {
    const bool vit = cfg_.model_kind() == "vit";
    for (const auto& [name, m] : named_modules()) {
      if (const auto* lin = dynamic_cast<const Linear*>(m)) {
        const double bound = 1.0 / std::sqrt(double(lin->in_features));  // kaiming_uniform(a=sqrt(5)) and bias
        redraw_uniform(lin->weight, gen_, bound);
        if (lin->bias.defined()) redraw_uniform(lin->bias, gen_, bound);
      } else if (const auto* emb = dynamic_cast<const Embedding*>(m)) {
        if (emb->bias.defined()) {  // the one-hot Linear(vocab, d)
          const double bound = 1.0 / std::sqrt(double(emb->weight.size(0)));
          redraw_uniform(emb->weight, gen_, bound);
          redraw_uniform(emb->bias, gen_, bound);
        } else if (!vit) {
          redraw_normal(emb->weight, gen_, 1.0);  // nn.Embedding: N(0, 1)
        }
      }
    }
  }
  for (const auto& [name, m] : named_modules())
    if (const auto* pe = dynamic_cast<const PositionalScoreBias*>(m)) {
      const double inv = 1.0 / double(pe->channels);
      if (cfg_.pe_init == "normal") redraw_normal(pe->weight, gen_, 0.02);
      else Array(pe->weight.data()).fill_(cfg_.pe_init == "negative" ? -inv : inv);
    }
}

std::vector<double> pe_temperatures(const TransformerModel& model) {
  std::vector<double> out;
  for (const auto& [name, m] : model.named_modules())
    if (const auto* pe = dynamic_cast<const PositionalScoreBias*>(m)) {
      double s = 0;
      for (double w : pe->weight.data().to_vector()) s += w;
      out.push_back(s);
    }
  return out;
}

namespace {
Array positions(int64_t start, int64_t T) {
  Array p = Array::empty({T}, DType::I64);
  for (int64_t t = 0; t < T; ++t) p.data<int64_t>()[t] = start + t;
  return p;
}
}  // namespace

// Each model draws its initial weights from its own generator, in construction order.
GPT::GPT(const ModelConfig& cfg, uint64_t seed)
    : TransformerModel(cfg, seed), tok_emb(cfg.vocab_size, cfg.d_model, gen_),
      pos_emb(cfg.context, cfg.d_model, gen_), ln_f(cfg.d_model) {
  check(cfg_.task == "lm", "GPT: task must be lm, got ", cfg_.task);
  register_module("tok_emb", tok_emb);
  register_module("pos_emb", pos_emb);
  build_blocks();
  register_module("ln_f", ln_f);
  init_weights();
}

Tensor GPT::forward(const Array& ids, KVCache* cache, std::vector<AttentionMaps>* maps) {
  check(ids.dtype() == DType::I64 && ids.ndim() == 2, "GPT: expected int64 token ids (B,T), got ",
        dtype_name(ids.dtype()), " ", ids.shape());
  const int64_t T = ids.size(1), start = cache ? cache->length() : 0;
  check(start + T <= cfg_.context, "GPT: ", start + T, " positions exceed the model's context of ", cfg_.context);
  Tensor x = add(tok_emb(ids), pos_emb(positions(start, T)));  // (B,T,C) + (T,C)
  x = ln_f(run_blocks(x, cache, maps));                        // (B,T,C)
  return matmul(x, transpose(tok_emb.weight, 0, 1));           // tied head: (B,T,C) @ (C,V) -> (B,T,V)
}

Encoder::Encoder(const ModelConfig& cfg, uint64_t seed)
    : TransformerModel(cfg, seed), tok_emb(cfg.vocab_size, cfg.d_model, gen_, 0.02, /*bias=*/cfg_.init == "torch"),
      pos_emb(cfg.context, cfg.d_model, gen_), ln_f(cfg.d_model), head(cfg.d_model, cfg.n_classes, gen_) {
  register_module("tok_emb", tok_emb);
  register_module("pos_emb", pos_emb);
  build_blocks();
  register_module("ln_f", ln_f);
  register_module("head", head);
  init_weights();
}

Tensor Encoder::forward(const Array& ids, std::vector<AttentionMaps>* maps) {
  check(ids.dtype() == DType::I64 && ids.ndim() == 2, "Encoder: expected int64 digits (B,T), got ",
        dtype_name(ids.dtype()), " ", ids.shape());
  const int64_t T = ids.size(1);
  check(T <= cfg_.context, "Encoder: sequence length ", T, " exceeds the model's ", cfg_.context);
  Tensor x = add(tok_emb(ids), pos_emb(positions(0, T)));  // (B,T,C)
  return head(ln_f(run_blocks(x, nullptr, maps)));         // (B,T,C) -> (B,T,classes)
}

ViT::ViT(const ModelConfig& cfg, uint64_t seed)
    : TransformerModel(cfg, seed), patch_emb(cfg.patch * cfg.patch, cfg.d_model, gen_),
      pos_emb(cfg.context, cfg.d_model, gen_), ln_f(cfg.d_model), head(cfg.d_model, cfg.n_classes, gen_) {
  cls_token = Tensor(Array::normal({1, 1, cfg.d_model}, gen_, 0.0, 0.02));
  register_module("patch_emb", patch_emb);
  register_parameter("cls_token", cls_token);
  register_module("pos_emb", pos_emb);
  build_blocks();
  register_module("ln_f", ln_f);
  register_module("head", head);
  init_weights();
}

Array patchify(const Array& images, int64_t p) {
  check(images.ndim() == 4 && images.size(1) == 1, "patchify: expected images (B,1,H,W), got ",
        images.shape());
  const int64_t B = images.size(0), H = images.size(2), W = images.size(3);
  check(H % p == 0 && W % p == 0, "patchify: patch ", p, " does not divide ", H, "x", W);
  return images.reshape({B, H / p, p, W / p, p})  // (B,1,H,W) -> (B,H/p,p,W/p,p)
      .permute({0, 1, 3, 2, 4})                   // -> (B,H/p,W/p,p,p)
      .reshape({B, (H / p) * (W / p), p * p});    // -> (B,N,p*p)
}

Tensor ViT::forward(const Array& images, std::vector<AttentionMaps>* maps) {
  Array patches = patchify(images, cfg_.patch);                          // (B,N,p*p)
  const int64_t B = patches.size(0), N = patches.size(1), C = cfg_.d_model;
  check(N + 1 == cfg_.context, "ViT: ", N, " patches for a model of ", cfg_.context - 1);
  Tensor x = patch_emb(Tensor(patches.to(patch_emb.weight.dtype())));   // (B,N,C)
  Tensor cls = expand(cls_token, {B, 1, C});                             // (1,1,C) -> (B,1,C)
  x = concat({cls, x}, 1);                                               // (B,N+1,C)
  x = add(x, pos_emb(positions(0, N + 1)));                              // + (N+1,C)
  x = ln_f(run_blocks(x, nullptr, maps));                                // (B,N+1,C)
  return head(reshape(slice(x, 1, 0, 1), {B, C}));                       // CLS -> (B,classes)
}

std::unique_ptr<TransformerModel> make_model(const ModelConfig& cfg, uint64_t seed) {
  std::string kind = cfg.model_kind();
  if (kind == "gpt") return std::make_unique<GPT>(cfg, seed);
  if (kind == "encoder") return std::make_unique<Encoder>(cfg, seed);
  return std::make_unique<ViT>(cfg, seed);
}

Tensor model_logits(TransformerModel& model, const Array& x, int64_t examples_per_forward) {
  auto forward = [&](const Array& xs) -> Tensor {
    if (auto* g = dynamic_cast<GPT*>(&model)) return g->forward(xs);
    if (auto* e = dynamic_cast<Encoder*>(&model)) return e->forward(xs);
    return dynamic_cast<ViT&>(model).forward(xs);
  };
  const int64_t B = x.size(0);
  if (examples_per_forward <= 0 || B <= examples_per_forward || B < 4 || grad_enabled()) return forward(x);
  // The forward in pieces: no op mixes examples, so each example's logits are the same bits either way, and the
  // pieces' activations stay in cache. The pieces are of near-equal size and never of one example: a product with
  // a single row takes the GEMM's one-row path, which sums in another order (the ViT's head multiplies one row an
  // image).
  const int64_t pieces = std::min((B + examples_per_forward - 1) / examples_per_forward, B / 2);
  Array all;
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t s = B * i / pieces, n = B * (i + 1) / pieces - s;
    const Array part = forward(x.narrow(0, s, n)).data();
    if (!all.defined()) {
      Shape shape = part.shape();
      shape[0] = B;
      all = Array::empty(shape, part.dtype());
    }
    all.narrow(0, s, n).copy_(part);
  }
  return Tensor(all);
}

StepResult model_loss(TransformerModel& model, const Array& x, const Array& y, int64_t examples_per_forward) {
  StepResult r;
  const Tensor logits = model_logits(model, x, examples_per_forward);
  r.loss = cross_entropy(logits, y);
  r.accuracy = accuracy(logits, y);
  return r;
}

int64_t attention_parameter_count(const ModelConfig& cfg0) {
  ModelConfig cfg = cfg0;
  cfg.resolve();
  return attention_parameters(cfg.variant, cfg.attention());  // from the variant's row (registry.h)
}

int64_t kv_bytes_per_token(const ModelConfig& cfg0, int64_t bytes_per_element) {
  ModelConfig cfg = cfg0;
  cfg.resolve();
  return cfg.n_layers * cfg.variant.cached_tensors() * cfg.kv_heads * (cfg.d_model / cfg.n_heads) * bytes_per_element;
}

int64_t gpt_parameter_count(const ModelConfig& cfg0) {
  ModelConfig cfg = cfg0;
  cfg.resolve();
  const int64_t d = cfg.d_model, h = cfg.hidden();
  const int64_t ln = 2 * d;
  const int64_t mlp = (d * h + h) + (h * d + d);
  const int64_t block = ln + attention_parameter_count(cfg) + ln + mlp;
  return cfg.vocab_size * d + cfg.context * d + cfg.n_layers * block + ln;  // tok_emb (tied head), pos_emb, ln_f
}

}  // namespace qkvlab
