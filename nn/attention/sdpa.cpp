#include "nn/attention/sdpa.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/node.h"
#include "tensor/gemm.h"

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

namespace {
// The attention core without a score bias, on Arrays, step by step as scaled_dot_product_attention below runs it
// on Tensors (the same views, the same kernels, in the same order), so that what AttentionBackward computes
// again in backward is bit for bit what forward computed.
struct Core {
  int64_t B, H, T, D, Hkv, S, G;
  double scale;
  bool causal;
  Array qg, kg, vg;  // (B,Hkv,G,T,D), (B,Hkv,1,S,D), (B,Hkv,1,S,D)

  Core(const Array& q, const Array& k, const Array& v, bool causal_)
      : B(q.size(0)), H(q.size(1)), T(q.size(2)), D(q.size(3)), Hkv(k.size(1)), S(k.size(2)), G(H / Hkv),
        scale(1.0 / std::sqrt(double(D))), causal(causal_), qg(q.reshape({B, Hkv, G, T, D})),
        kg(k.reshape({B, Hkv, 1, S, D})), vg(v.reshape({B, Hkv, 1, S, D})) {}
  Array probs() const {  // (B,H,T,S): the softmax written over the scores, which nothing else holds
    Array p = scores(qg, kg.mT()).reshape({B, H, T, S});
    scaled_causal_softmax_(p, scale, causal);
    return p;
  }

  // Causal products skip what the mask hides, in blocks of kBlock queries or keys (64: `small`, T 128, saves a
  // quarter of the products; smaller blocks, or `tiny`'s T 64 in two, measured no faster). Queries [i0, i1) see keys
  // [0, seen(i1)): scores (q k^T, dout v^T) are not computed for the keys after (the softmax and its backward
  // write 0 there without reading), and products over keys (P v, dS k) stop there. Key j is seen by queries
  // [first(j), T): products over queries (P^T dout, dS^T q) start there. What is left out are terms with an exact
  // 0 factor (a masked probability or score gradient) at the end or the start of each sum; a sum that starts at +0
  // stays +0 through them, so with finite values the results are the same bits, provided each product is one pass
  // over its inner dim: at most 192 (the GEMM's smallest block along it, KC in tensor/gemm.cpp). Everything else
  // takes the whole product.
  static constexpr int64_t kBlock = 64;
  bool blocked() const { return causal && T > kBlock && T <= 192 && S <= 192; }
  int64_t seen(int64_t i1) const { return std::min(S, i1 + S - T); }
  // The end of the block that starts at i of n: kBlock on, the last block taking the rest (kBlock to 2 kBlock - 1),
  // so that no block is a single row, which the GEMM would sum in another order (gemm_one_row).
  static int64_t block_end(int64_t i, int64_t n) { return n - i < 2 * kBlock ? n : i + kBlock; }
  int64_t first(int64_t j) const { return std::clamp<int64_t>(j - (S - T), 0, T); }
  static Array empty_like_product(const Array& a, const Array& b) {  // (batch of a, a rows, b cols)
    Shape shape(a.shape().begin(), a.shape().end() - 1);
    shape.push_back(b.size(-1));
    return Array::empty(shape, a.dtype());
  }
  // A new array of x's shape with x's order of dims in memory: for heads that are a permuted view of a (B,T,H,D)
  // projection, (B,T,H,D) memory seen as (B,H,T,D). What attention writes in that layout (its output, the
  // gradients of q, k, v) goes back to (B,T,H*D) as a view, with no transposing copy.
  static Array empty_like_layout(const Array& x) {
    std::vector<int64_t> order(size_t(x.ndim()));
    for (size_t d = 0; d < order.size(); ++d) order[d] = int64_t(d);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.strides()[a] > x.strides()[b]; });
    Shape shape;
    for (int64_t d : order) shape.push_back(x.size(d));
    std::vector<int64_t> back(order.size());
    for (size_t i = 0; i < order.size(); ++i) back[size_t(order[i])] = int64_t(i);
    return Array::empty(shape, x.dtype()).permute(back);
  }
  // (..., T, X) @ (..., X, S): scores of queries for keys
  Array scores(const Array& a, const Array& b) const {
    if (!blocked()) return matmul(a, b);
    Array out = empty_like_product(a, b);
    for (int64_t i0 = 0, i1; i0 < T; i0 = i1) {
      i1 = block_end(i0, T);
      const int64_t n = seen(i1);  // n >= i1 >= 1: S >= T
      Array o = out.slice(-2, i0, i1).slice(-1, 0, n);
      matmul_into(o, a.slice(-2, i0, i1), b.slice(-1, 0, n));
    }
    return out;
  }
  // (..., T, S) @ (..., S, X): probabilities (or their gradient) times values (or keys), into out
  void over_keys(const Array& p, const Array& b, Array& out) const {
    if (!blocked()) return matmul_into(out, p, b);
    for (int64_t i0 = 0, i1; i0 < T; i0 = i1) {
      i1 = block_end(i0, T);
      const int64_t n = seen(i1);
      Array o = out.slice(-2, i0, i1);
      matmul_into(o, p.slice(-2, i0, i1).slice(-1, 0, n), b.slice(-2, 0, n));
    }
  }
  // (..., S, T) @ (..., T, X): the keys' rows of a product over queries (P^T dout, dS^T q), into out
  void key_rows(const Array& pt, const Array& b, Array& out) const {
    if (!blocked()) return matmul_into(out, pt, b);
    for (int64_t j0 = 0, j1; j0 < S; j0 = j1) {
      j1 = block_end(j0, S);
      const int64_t f = first(j0);
      Array o = out.slice(-2, j0, j1);  // f < T: key j0 < S is seen by query T - 1
      matmul_into(o, pt.slice(-2, j0, j1).slice(-1, f, T), b.slice(-2, f, T));
    }
  }
};

// Backward of attention, which saves q, k and v: the probabilities (B,H,T,S), the largest activation of a
// block (8 MB a layer for the `small` GPT: B 32, 4 heads, T 128), are made again from q and k when backward
// reaches the layer, instead of being kept from forward to backward. It costs one more q k^T and softmax a layer.
// The gradients are those of the chain of ops (matmul, softmax, matmul) with every backward as its own node
// (autograd/ops_matmul.cpp, ops_nn.cpp), bit for bit: the same products, in the same order.
//   out = P V                      dP = dout V^T              dV = P^T dout         (summed over the G heads)
//   P = softmax(q k^T * scale)     dS = scale P (dP - rowsum(dP P))
//                                  dq = dS k                  dk = dS^T q           (summed over the G heads)
// Probabilities of at most keep_for_backward_bytes() (autograd/ops.h) are kept from forward instead: the same
// bits, without the second product and softmax.
struct AttentionBackward : Node {
  Array q, k, v;  // as given: (B,H,T,D), (B,Hkv,S,D), (B,Hkv,S,D); v may be k itself (Q-K=V)
  Array kept;     // forward's probabilities (B,H,T,S) when small enough, else undefined
  bool causal = true;
  const char* name() const override { return "AttentionBackward"; }
  std::vector<Array> backward(const Array& g) override {  // g: (B,H,T,D)
    const Core c(q, k, v, causal);
    const Array g5 = g.reshape({c.B, c.Hkv, c.G, c.T, c.D});
    Array p = kept.defined() ? kept : c.probs();  // kept, or made again
    // Each gradient in its input's layout (Core::empty_like_layout). dk and dv with grouped heads (G > 1) are
    // products over the G query heads of a group, summed afterwards.
    auto key_grad = [&](const Array& like, const Array& a, const Array& b) {  // (B,Hkv,S,D) = sum_G a @ b
      if (c.G == 1) {
        Array out = Core::empty_like_layout(like);
        Array o5 = out.view({c.B, c.Hkv, 1, c.S, c.D});
        c.key_rows(a, b, o5);
        return out;
      }
      Array all = Core::empty_like_product(a, b);
      c.key_rows(a, b, all);
      return sum_to(all, c.vg.shape()).reshape(like.shape());
    };
    Array dq, dk, dv;
    if (needs_grad(2)) dv = key_grad(v, p.reshape({c.B, c.Hkv, c.G, c.T, c.S}).mT(), g5);
    if (needs_grad(0) || needs_grad(1)) {
      Array ds = c.scores(g5, c.vg.mT()).reshape({c.B, c.H, c.T, c.S});  // dP, made into dS in place
      scaled_causal_softmax_backward_(p, ds, c.scale, c.causal);
      p = Array();  // 8 MB a layer of `small` gone before the two products
      ds = ds.reshape({c.B, c.Hkv, c.G, c.T, c.S});
      if (needs_grad(0)) {
        dq = Core::empty_like_layout(q);
        Array dq5 = dq.view({c.B, c.Hkv, c.G, c.T, c.D});
        c.over_keys(ds, c.kg, dq5);
      }
      // dS^T q: the products of (q^T dS)^T, term by term in the same order (a * b = b * a exactly)
      if (needs_grad(1)) dk = key_grad(k, ds.mT(), c.qg);
    }
    return {dq, dk, dv};
  }
  void release_saved() override { q = k = v = kept = Array(); }
};

// Attention for one query a head (T = 1) with nothing to keep for backward: a decoding step with the KV cache.
// The same products and softmax call as Core's probs and over_keys (so the same bits: tests/nn/test_attention.cpp),
// without the batched matmul's set-up around each of them (broadcast shapes, offset tables, views), which took most
// of the ~4 us a layer of `small` spent on attention at 64 keys. Mirrors matmul's one choice that changes the
// order of a sum: for a single batch entry with one KV head (MQA), matmul multiplies the G query rows of q as one
// (G, D) @ (D, S) product instead of G one-row products.
Array one_query_attention(const Array& q, const Array& k, const Array& v, bool causal) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), Hkv = k.size(1), S = k.size(2), G = H / Hkv;
  Array p = Array::empty({B, H, 1, S}, q.dtype());
  Array out = Core::empty_like_layout(q);  // (B,H,1,D) in q's layout, as the Core path writes it
  if (out.strides()[3] != 1) out = Array::empty({B, H, 1, D}, q.dtype());  // (a q whose D is not its densest dim)
  const bool one_product = B == 1 && Hkv == 1 && G > 1 && q.is_contiguous();
  dispatch_float(q.dtype(), "attention", [&](auto z) {
    using T = decltype(z);
    const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
    T *pp = p.data<T>(), *op = out.data<T>();
    const int64_t qb = q.strides()[0], qh = q.strides()[1], qd = q.strides()[3];
    const int64_t kb = k.strides()[0], kh = k.strides()[1], ks = k.strides()[2], kd = k.strides()[3];
    const int64_t vb = v.strides()[0], vh = v.strides()[1], vs = v.strides()[2], vd = v.strides()[3];
    if (one_product) {
      gemm(G, S, D, qp, D, 1, kp, kd, ks, pp, S, false);  // scores of the G heads: (G, D) @ k^T
    } else {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)  // scores of one head: (1, D) @ k^T (its KV head's keys)
          gemm(1, S, D, qp + b * qb + h * qh, 0, qd, kp + b * kb + (h / G) * kh, kd, ks, pp + (b * H + h) * S, S,
               false);
    }
    scaled_causal_softmax_(p, 1.0 / std::sqrt(double(D)), causal);
    const int64_t ob = out.strides()[0], oh = out.strides()[1];
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)  // probabilities times values: (1, S) @ (S, D)
        gemm(1, D, S, pp + (b * H + h) * S, 0, 1, vp + b * vb + (h / G) * vh, vs, vd, op + b * ob + h * oh, D,
             false);
  });
  return out;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const ScoreBias& score_bias, AttentionMaps* maps) {
  check_attention_shapes(q, k, v);
  const bool keeps = grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (q.size(2) == 1 && !score_bias && !maps && !keeps) {  // decoding with the cache: one query a head
    ProfileScope prof("attention");
    return Tensor(one_query_attention(q.data(), k.data(), v.data(), causal));
  }
  if (!score_bias && !maps) {  // one op that keeps only q, k and v for backward (AttentionBackward above)
    ProfileScope prof("attention");
    const Core c(q.data(), k.data(), v.data(), causal);
    Array p = c.probs();
    Array out = Core::empty_like_layout(q.data());  // (B,H,T,D) in q's layout: merging the heads is a view
    Array out5 = out.view({c.B, c.Hkv, c.G, c.T, c.D});
    c.over_keys(p.reshape({c.B, c.Hkv, c.G, c.T, c.S}), c.vg, out5);
    return record<AttentionBackward>(out, {&q, &k, &v}, Loc::current(), [&](AttentionBackward& n) {
      n.q = q.data();
      n.k = k.data();
      n.v = v.data();
      if (p.numel() * int64_t(dtype_size(p.dtype())) <= keep_for_backward_bytes()) n.kept = p;
      n.causal = causal;
    });
  }
  // With a score bias ((X)+) or maps to fill: the chain of ops, each with its own backward node.
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
