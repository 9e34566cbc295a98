// The table of variants: one row per projection scheme (registry.cpp), and everything derived from it.
//
//   qkv  kv  qk  single          the four projection schemes (paper: QKV, Q-K=V, Q=K-V, Q=K=V)
//   gqa:G  mqa                   qkv with G (or 1) KV heads      (paper: GQA-G, MQA; G counts KV heads)
//   kv-gqa:G  kv-mqa             kv with G (or 1) KV heads       (paper: Q-GQA-G, Q-MQA)
//   any id + "+"                 with the 2D positional score bias (paper: (Q=K-V)+, (Q=K=V)+)
//
// Adding a variant is one class (variants.h) and one row (the table in registry.cpp): parsing, both names, the
// cached tensors, the parameter count (models/transformer.h) and the KV bytes per token all read the row
// (docs/DESIGN.md, "The attention variants").
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/attention/variants.h"

namespace qkvlab {

// The names of a row's head-sharing forms (GQA-G: G KV heads; MQA: one). Rows whose queries are their keys have
// none: q needs all H heads, so k does too.
struct HeadSharingNames {
  const char* gqa_id = nullptr;     // id prefix before G, e.g. "gqa:"
  const char* gqa_paper = nullptr;  // paper-name prefix before G, e.g. "GQA-"
  const char* mqa_id = nullptr;     // e.g. "mqa"
  const char* mqa_paper = nullptr;  // e.g. "MQA"
};

struct VariantRow {
  const char* id;          // CLI id, e.g. "kv"
  const char* paper_name;  // e.g. "Q-K=V"
  const char* projects;    // the Linear layers the class owns besides o, of q, k and v: "q k v", "q k", "k"
  bool q_is_k;             // q is the very Tensor k: symmetric scores, and kv_heads must equal heads
  bool v_is_k;             // v is the very Tensor k: the cache holds K only
  HeadSharingNames sharing;  // all nullptr: no GQA/MQA form
  std::unique_ptr<Attention> (*make)(const AttentionConfig&, Generator&);  // the class (variants.h)

  bool has(char projection) const;  // has('q'): the class owns a q Linear
  bool shares_heads() const { return sharing.gqa_id != nullptr; }
};

// Every row, the paper's four first. The (X)+ bias is not a column: any row takes it (VariantSpec::pos_bias).
const std::vector<VariantRow>& variant_table();
// A program (or test) with its own variant class can add a row at run time, before it parses any names, and take it
// out again. Fails on an id or name another row already uses. Not thread-safe: change the table before threads
// parse names.
void add_variant(const VariantRow& row);
void remove_variant(const std::string& id);

struct VariantSpec {
  std::string scheme = "qkv";  // the row's id
  int64_t kv_heads = 0;        // 0: as many as query heads
  bool pos_bias = false;
  const VariantRow& row() const;   // the row of `scheme`
  std::string id() const;          // canonical CLI id, e.g. "kv-gqa:4"
  std::string paper_name() const;  // e.g. "Q-GQA-4"
  int64_t cached_tensors() const;  // per token per layer: 2 (K and V) or 1 (K only, when V is K)
  bool operator==(const VariantSpec&) const = default;
};

// Accepts ids and paper names (case of ids ignored): "kv-gqa:4", "Q-GQA-4", "(Q=K=V)+", "single+".
// Unknown names: "unknown variant 'foo'; valid: qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa (each may end
// in +), or the paper's names QKV, Q-K=V, Q=K-V, Q=K=V, GQA-G, MQA, Q-GQA-G, Q-MQA, (Q=K-V)+, (Q=K=V)+"
// (the list is made from the table).
VariantSpec parse_variant(const std::string& name);
// The ids, from the table: "qkv, kv, qk, single, gqa:G, mqa, kv-gqa:G, kv-mqa" (what `train --help` lists).
std::string variant_ids();

// A set name ("paper-synthetic", "paper-lm", "all") or a comma-separated list of names.
// paper-lm uses G = n_heads / 4 for its GQA variants, as the paper does.
std::vector<VariantSpec> variant_set(const std::string& set, int64_t n_heads);

// Builds the layer with the row's class. cfg.kv_heads and cfg.pe_channels are taken from the spec (pe_channels
// defaults to 10 when the spec has the bias and cfg.pe_channels is 0). Errors name the variant: heads not dividing,
// kv_heads for q = k.
std::unique_ptr<Attention> make_attention(const VariantSpec& spec, AttentionConfig cfg, Generator& gen);

// The config the spec implies for a model with these dims (kv_heads resolved, pe_channels set).
AttentionConfig resolve_config(const VariantSpec& spec, AttentionConfig cfg);

// One layer's attention parameters (q, k, v as the row projects them, the output projection, the (X)+ bias), in
// closed form from the row; cfg as resolve_config returns it.
int64_t attention_parameters(const VariantSpec& spec, const AttentionConfig& cfg);

}  // namespace qkvlab
