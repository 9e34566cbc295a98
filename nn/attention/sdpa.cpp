#include "nn/attention/sdpa.h"

#include <cmath>
#include <limits>
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

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const ScoreBias& score_bias, AttentionMaps* maps) {
  check(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, "attention: expected q, k, v of rank 4 (B,H,T,D), got ",
        shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2);
  check(k.shape() == v.shape(), "attention: k ", shape_str(k.shape()), " and v ", shape_str(v.shape()), " differ");
  check(k.size(0) == B && k.size(3) == D, "attention: q ", shape_str(q.shape()), " and k ", shape_str(k.shape()),
        " disagree on batch or head size");
  check(Hkv > 0 && H % Hkv == 0, "attention: ", Hkv, " KV heads do not divide ", H, " query heads");
  check(S >= T, "attention: ", S, " keys for ", T, " queries; a causal query needs its own key");
  const int64_t G = H / Hkv;  // query heads per KV head

  Tensor qg = reshape(q, {B, Hkv, G, T, D});                           // (B,H,T,D) -> (B,Hkv,G,T,D)
  Tensor kg = unsqueeze(k, 2);                                         // (B,Hkv,S,D) -> (B,Hkv,1,S,D)
  Tensor vg = v.impl() == k.impl() ? kg : unsqueeze(v, 2);            // V is K (Q-K=V): the same node
  Tensor scores = matmul(qg, transpose(kg, -2, -1));                   // (B,Hkv,G,T,D) @ (B,Hkv,1,D,S)
  scores = reshape(mul(scores, 1.0 / std::sqrt(double(D))), {B, H, T, S});  // -> (B,H,T,S), scaled
  if (score_bias) scores = score_bias(scores, S - T);                  // (X)+: after scaling, before mask
  if (maps) maps->scores = scores.data();
  if (causal && S > 1) scores = masked_fill(scores, causal_mask(T, S, scores.dtype()),
                                            -std::numeric_limits<double>::infinity());
  Tensor p = softmax(scores, -1);                                      // (B,H,T,S), rows sum to 1
  if (maps) maps->probs = p.data();
  Tensor out = matmul(reshape(p, {B, Hkv, G, T, S}), vg);              // (B,Hkv,G,T,S) @ (B,Hkv,1,S,D)
  return reshape(out, {B, H, T, D});                                   // -> (B,H,T,D)
}

}  // namespace qkvlab
