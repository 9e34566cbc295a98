// Variant names: CLI ids and the paper's names, both ways, and the paper's sets.
//
//   qkv  kv  qk  single          the four projection schemes (paper: QKV, Q-K=V, Q=K-V, Q=K=V)
//   gqa:G  mqa                   qkv with G (or 1) KV heads      (paper: GQA-G, MQA; G counts KV heads)
//   kv-gqa:G  kv-mqa             kv with G (or 1) KV heads       (paper: Q-GQA-G, Q-MQA)
//   any id + "+"                 with the 2D positional score bias (paper: (Q=K-V)+, (Q=K=V)+)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/attention/variants.h"

namespace qkvlab {

enum class Projection { QKV, SharedKV, SharedQK, Single };

struct VariantSpec {
  Projection kind = Projection::QKV;
  int64_t kv_heads = 0;  // 0: as many as query heads
  bool pos_bias = false;
  std::string id() const;          // canonical CLI id, e.g. "kv-gqa:4"
  std::string paper_name() const;  // e.g. "Q-GQA-4"
  int64_t cached_tensors() const;  // per token per layer: 2 (K and V) or 1 (K only, when V is K)
  bool operator==(const VariantSpec&) const = default;
};

// Accepts ids and paper names (case of ids ignored): "kv-gqa:4", "Q-GQA-4", "(Q=K=V)+", "single+".
// Unknown names: "unknown variant 'foo'; valid: qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa (each may end
// in +), or the paper's names QKV, Q-K=V, Q=K-V, Q=K=V, GQA-G, MQA, Q-GQA-G, Q-MQA, (Q=K-V)+, (Q=K=V)+"
VariantSpec parse_variant(const std::string& name);

// A set name ("paper-synthetic", "paper-lm", "all") or a comma-separated list of names.
// paper-lm uses G = n_heads / 4 for its GQA variants, as the paper does.
std::vector<VariantSpec> variant_set(const std::string& set, int64_t n_heads);

// Builds the layer. cfg.kv_heads and cfg.pe_channels are taken from the spec (pe_channels defaults to 10 when the
// spec has the bias and cfg.pe_channels is 0). Errors name the variant: heads not dividing, kv_heads for q = k.
std::unique_ptr<Attention> make_attention(const VariantSpec& spec, AttentionConfig cfg, Generator& gen);

// The config the spec implies for a model with these dims (kv_heads resolved, pe_channels set).
AttentionConfig resolve_config(const VariantSpec& spec, AttentionConfig cfg);

}  // namespace qkvlab
