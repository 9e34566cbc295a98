#include "nn/attention/attention.h"

namespace qkvlab {

int64_t LayerKVCache::bytes() const {
  if (!k.defined()) return 0;
  int64_t per_position = k.size(0) * k.size(1) * k.size(3) * int64_t(dtype_size(k.dtype()));  // B x Hkv x D
  return length * per_position * (v.defined() ? 2 : 1);
}

int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (auto& l : layers) total += l.bytes();
  return total;
}

Tensor split_heads(const Tensor& x, int64_t heads) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  return permute(reshape(x, {B, T, heads, C / heads}), {0, 2, 1, 3});  // (B,T,h*D) -> (B,T,h,D) -> (B,h,T,D)
}

Tensor merge_heads(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  return reshape(permute(x, {0, 2, 1, 3}), {B, T, H * D});  // (B,H,T,D) -> (B,T,H,D) -> (B,T,H*D)
}

Attention::Attention(const AttentionConfig& cfg, Generator& gen) : o(cfg.d_model, cfg.d_model, gen), cfg_(cfg) {
  check(cfg.n_heads > 0 && cfg.d_model > 0 && cfg.d_model % cfg.n_heads == 0, "attention: ", cfg.n_heads,
        " heads do not divide d_model ", cfg.d_model);
  check(cfg.kv() > 0 && cfg.n_heads % cfg.kv() == 0, "attention: kv_heads ", cfg.kv(), " does not divide ",
        cfg.n_heads, " heads");
  register_module("o", o);
  if (cfg.pe_channels > 0) {
    pe = std::make_unique<PositionalScoreBias>(cfg.context, cfg.pe_channels);
    register_module("pe", *pe);
  }
}

namespace {
// Appends new keys/values (B, Hkv, T, D) to the cache and returns everything cached so far.
Array append(Array& store, const Array& fresh, int64_t at, int64_t capacity) {
  const int64_t B = fresh.size(0), Hkv = fresh.size(1), T = fresh.size(2), D = fresh.size(3);
  if (!store.defined()) store = Array::zeros({B, Hkv, capacity, D}, fresh.dtype());
  check(store.size(0) == B, "KV cache: batch ", B, " differs from the cached batch ", store.size(0));
  check(at + T <= capacity, "KV cache: ", at + T, " positions exceed the context of ", capacity);
  store.narrow(2, at, T).copy_(fresh);
  return store.narrow(2, 0, at + T);
}
}  // namespace

Tensor Attention::forward(const Tensor& x, LayerKVCache* cache, AttentionMaps* maps) {
  check(x.ndim() == 3 && x.size(2) == cfg_.d_model, "attention: expected input (B,T,", cfg_.d_model, "), got ",
        x.shape());
  Projections p = project(x);                              // q (B,T,H*D), k and v (B,T,Hkv*D)
  const bool v_is_k = p.v.impl() == p.k.impl();
  Tensor q = split_heads(p.q, cfg_.n_heads);               // (B,H,T,D)
  Tensor k = split_heads(p.k, cfg_.kv());                  // (B,Hkv,T,D)
  Tensor v = v_is_k ? k : split_heads(p.v, cfg_.kv());     // (B,Hkv,T,D), or K itself
  if (cache) {                                             // decoding: attend over every cached position
    int64_t at = cache->length;
    k = Tensor(append(cache->k, k.data(), at, cfg_.context));
    v = v_is_k ? k : Tensor(append(cache->v, v.data(), at, cfg_.context));
    cache->length = at + x.size(1);
  }
  ScoreBias bias;
  if (pe) bias = [this](const Tensor& s, int64_t off) { return pe->forward(s, off); };
  Tensor y = scaled_dot_product_attention(q, k, v, cfg_.causal, bias, maps);  // (B,H,T,D)
  return o(merge_heads(y));                                                    // (B,T,C)
}

std::string Attention::extra_repr() const {
  return "d=" + std::to_string(cfg_.d_model) + ", heads=" + std::to_string(cfg_.n_heads) +
         ", kv_heads=" + std::to_string(cfg_.kv()) + (cfg_.causal ? ", causal" : "") +
         (pe ? ", pe=" + std::to_string(cfg_.pe_channels) : "");
}

}  // namespace qkvlab
