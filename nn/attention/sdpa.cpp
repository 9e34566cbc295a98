#include "nn/attention/sdpa.h"

#include <cmath>
#include <vector>

namespace qkvlab {

Array causal_mask(int64_t T, int64_t S, DType dtype) {
  // Built once per shape and kept: every attention layer of every step asks for the same few masks. The cache
  // is per thread, so no lock; callers only read the mask.
  struct Entry {
    int64_t T, S;
    DType dtype;
    Array mask;
  };
  thread_local std::vector<Entry> cache;
  for (const Entry& e : cache)
    if (e.T == T && e.S == S && e.dtype == dtype) return e.mask;
  Array m = Array::zeros({T, S}, dtype);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + (S - T) + 1; j < S; ++j) m.set({i, j}, 1.0);
  if (cache.size() >= 64) cache.erase(cache.begin());  // decoding asks for one mask per length: keep it bounded
  cache.push_back({T, S, dtype, m});
  return m;
}

namespace {
void check_attention_shapes(const Tensor& q, const Tensor& k, const Tensor& v) {
  check(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, "attention: expected q, k, v of rank 4 (B,H,T,D), got ",
        q.shape(), ", ", k.shape(), ", ", v.shape());
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2);
  check(k.shape() == v.shape(), "attention: k ", k.shape(), " and v ", v.shape(), " differ");
  check(k.size(0) == B && k.size(3) == D, "attention: q ", q.shape(), " and k ", k.shape(),
        " disagree on batch or head size");
  check(Hkv > 0 && H % Hkv == 0, "attention: ", Hkv, " KV heads do not divide ", H, " query heads");
  check(S >= T, "attention: ", S, " keys for ", T, " queries; a causal query needs its own key");
}
}  // namespace

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                           const ScoreBias& score_bias, AttentionMaps* maps) {
  check_attention_shapes(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hkv = k.size(1), S = k.size(2);
  const int64_t G = H / Hkv;  // query heads per KV head (grouped as in scaled_dot_product_attention below)
  Tensor kg = unsqueeze(k, 2), vg = unsqueeze(v, 2);                              // (B,Hkv,1,S,D)
  Tensor s = matmul(reshape(q, {B, Hkv, G, T, D}), transpose(kg, -2, -1));        // (B,Hkv,G,T,S)
  s = reshape(mul(s, 1.0 / std::sqrt(double(D))), {B, H, T, S});                  // scaled scores (B,H,T,S)
  if (score_bias) s = score_bias(s, S - T);
  if (maps) maps->scores = s.data();
  if (causal && S > 1) s = masked_fill(s, causal_mask(T, S, s.dtype()), -INFINITY);  // (S = 1: nothing to hide)
  Tensor p = softmax(s, -1);                                                      // rows sum to 1
  if (maps) maps->probs = p.data();
  return reshape(matmul(reshape(p, {B, Hkv, G, T, S}), vg), {B, H, T, D});        // (B,H,T,D)
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const ScoreBias& score_bias, AttentionMaps* maps) {
  check_attention_shapes(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2);
  const int64_t G = H / Hkv;  // query heads per KV head

  Tensor qg = reshape(q, {B, Hkv, G, T, D});                           // (B,H,T,D) -> (B,Hkv,G,T,D)
  Tensor kg = unsqueeze(k, 2);                                         // (B,Hkv,S,D) -> (B,Hkv,1,S,D)
  Tensor vg = v.impl() == k.impl() ? kg : unsqueeze(v, 2);            // V is K (Q-K=V): the same node
  Tensor qk = matmul(qg, transpose(kg, -2, -1));                       // (B,Hkv,G,T,D) @ (B,Hkv,1,D,S)
  qk = reshape(qk, {B, H, T, S});                                      // -> (B,H,T,S), not yet scaled
  const double scale = 1.0 / std::sqrt(double(D));
  // scaled_causal_softmax(x, scale, causal) = softmax(masked_fill(x * scale, causal_mask(T, S), -inf), -1), the
  // chain written out in one op and one pass over the scores instead of three (query i sees keys j <= i + S - T).
  // tests/tensor/test_ops_nn.cpp runs that chain against it, forward and backward; tests/nn/test_attention.cpp
  // the whole attention against attention_reference above.
  Tensor p;
  if (score_bias) {                                                    // (X)+: bias after scaling, before mask
    Tensor scores = score_bias(mul(qk, scale), S - T);                 // (B,H,T,S)
    if (maps) maps->scores = scores.data();
    p = scaled_causal_softmax(scores, 1.0, causal);                    // (B,H,T,S), rows sum to 1
  } else {
    if (maps) maps->scores = mul(qk.data(), scale);                    // the scaled scores, only for the maps
    p = scaled_causal_softmax(qk, scale, causal);                      // (B,H,T,S), rows sum to 1
  }
  if (maps) maps->probs = p.data();
  Tensor out = matmul(reshape(p, {B, Hkv, G, T, S}), vg);              // (B,Hkv,G,T,S) @ (B,Hkv,1,S,D)
  return reshape(out, {B, H, T, D});                                   // -> (B,H,T,D)
}

}  // namespace qkvlab
