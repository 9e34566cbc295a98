// The attention layer's shared half. A variant says only how q, k and v come from x (project()); this base
// splits and merges heads, applies the causal mask and the optional (X)+ score bias through the core
// (sdpa.h), runs the output projection, and keeps the KV cache for decoding.
//
// What the cache holds follows from what project() returns: when v is the very same Tensor as k (Q-K=V, Q=K=V),
// only K is stored. Nothing else has to tell it.
#pragma once
#include <memory>
#include <string>

#include "nn/attention/positional_bias.h"
#include "nn/attention/sdpa.h"
#include "nn/layers.h"

namespace qkvlab {

struct AttentionConfig {
  int64_t d_model = 64;
  int64_t n_heads = 4;
  int64_t kv_heads = 0;      // 0 = n_heads. G < n_heads: grouped-query (GQA-G); 1: multi-query (MQA)
  int64_t context = 64;      // longest sequence: sizes the positional tables and the cache
  int64_t pe_channels = 0;   // > 0: the (X)+ 2D positional score bias with this many channels (paper: 10)
  bool causal = true;
  int64_t head_dim() const { return d_model / n_heads; }
  int64_t kv() const { return kv_heads == 0 ? n_heads : kv_heads; }
};

// One layer's cache: keys, and values unless V is K, for every position seen so far.
struct LayerKVCache {
  Array k, v;            // (B, Hkv, capacity, D); v stays undefined when the variant caches K only
  int64_t length = 0;    // positions stored
  int64_t bytes() const; // bytes held for `length` positions: B x length x (1 or 2) x Hkv x D x sizeof(element)
};

struct KVCache {
  std::vector<LayerKVCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers[0].length; }
  int64_t bytes() const;
  void reset() { layers.clear(); }
};

// q, k, v as projected from x (B, T, C): q (B,T,H*D); k, v (B,T,Hkv*D). v may be the same Tensor as k.
struct Projections {
  Tensor q, k, v;
};

class Attention : public Module {
 public:
  Attention(const AttentionConfig& cfg, Generator& gen);
  // x (B, T, C) -> (B, T, C). With a cache, x holds only the new positions, appended after those cached.
  Tensor forward(const Tensor& x, LayerKVCache* cache = nullptr, AttentionMaps* maps = nullptr);
  virtual Projections project(const Tensor& x) = 0;  // the one thing a variant defines
  const AttentionConfig& config() const { return cfg_; }
  std::string extra_repr() const override;

  Linear o;                                 // output projection (C -> C)
  std::unique_ptr<PositionalScoreBias> pe;  // the (X)+ bias, when cfg.pe_channels > 0

 protected:
  AttentionConfig cfg_;
};

// (B, T, heads*D) -> (B, heads, T, D)
Tensor split_heads(const Tensor& x, int64_t heads);
// (B, H, T, D) -> (B, T, H*D)
Tensor merge_heads(const Tensor& x);

}  // namespace qkvlab
