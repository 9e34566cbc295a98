// The attention core, shared by every variant. It knows nothing of projections: it takes heads.
//
//   q (B, H, T, D)      queries for T positions
//   k (B, Hkv, S, D)    keys for S positions (S >= T when earlier positions come from a KV cache)
//   v (B, Hkv, S, D)
//   -> (B, H, T, D)
//
// Grouped heads (GQA/MQA): Hkv divides H and query head h reads KV head h / (H / Hkv) (contiguous groups).
// That is done by viewing q as (B, Hkv, G, T, D) and k, v as (B, Hkv, 1, S, D): matmul broadcasts the KV head
// over its G query heads, so no key or value is ever copied, and the backward sums the G contributions.
//
// Order of operations on the scores: S = q k^T / sqrt(D); S = score_bias(S) if given (the (X)+ variants);
// causal mask (query i sees keys j <= i + S - T); softmax over keys; times v. Scale (when there is no bias), mask
// and softmax run as one op, scaled_causal_softmax (autograd/ops.h), which equals that chain.
#pragma once
#include <functional>

#include "autograd/ops.h"

namespace qkvlab {

// Maps pre-softmax scores (B, H, T, S) to new scores of the same shape; q_offset = S - T is the position of the
// first query (non-zero when decoding with a cache).
using ScoreBias = std::function<Tensor(const Tensor& scores, int64_t q_offset)>;

// What a caller may want to look at: the scores after scaling and bias, before the mask (the "pre-softmax
// scores" whose asymmetry max |S - S^T| the paper measures), and the attention probabilities.
struct AttentionMaps {
  Array scores;  // (B, H, T, S)
  Array probs;   // (B, H, T, S)
};

// Read this first: attention as the chain of ops that defines it, each op recording its own backward node:
//   scores = matmul(q, k^T) * 1/sqrt(D)            (B,H,T,S)
//   scores = score_bias(scores, S - T)             if given
//   scores = masked_fill(scores, causal_mask, -inf) if causal
//   probs  = softmax(scores, -1)
//   out    = matmul(probs, v)                      (B,H,T,D)
// scaled_dot_product_attention below computes the same thing with scale, mask and softmax fused into one op
// (scaled_causal_softmax): the same output, maps and gradients, bit for bit in float32, because the fused op
// does the chain's arithmetic in the chain's order (tensor/ops.h). tests/nn/test_attention.cpp holds it to that.
// Without a score bias and without maps (every training step of QKV, Q-K=V, Q=K-V, Q=K=V, GQA and MQA), it also
// records the whole product-softmax-product as one node, AttentionBackward, which keeps q, k and v, and the
// probabilities only when they take at most keep_for_backward_bytes() (autograd/ops.h); larger ones it makes again
// in backward: 8 MB fewer saved a layer of the `small` GPT, for one more q k^T and softmax a layer. The chain's
// gradients bit for bit either way (nn/attention/sdpa.cpp).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                           const ScoreBias& score_bias = nullptr, AttentionMaps* maps = nullptr);

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const ScoreBias& score_bias = nullptr, AttentionMaps* maps = nullptr);

// The causal mask as an Array of 1 (masked) and 0: (T, S), masked where key j > query i + (S - T). The fast
// attention applies it inside scaled_causal_softmax; attention_reference (and notebooks) use this Array.
Array causal_mask(int64_t T, int64_t S, DType dtype);

}  // namespace qkvlab
