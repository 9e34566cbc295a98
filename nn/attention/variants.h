// The paper's four ways to get q, k and v from x. Each is one project() over the shared base (attention.h).
//
//   id       paper name   projections        cached per token per layer
//   qkv      QKV          q, k, v            K and V: 2 Hkv D
//   kv       Q-K=V        q, k;  v = k       K only:  Hkv D
//   qk       Q=K-V        k, v;  q = k       K and V: 2 H D
//   single   Q=K=V        k;  q = v = k      K only:  H D
//
// When q is k the scores k_i . k_j are symmetric in i and j; the (X)+ positional bias (positional_bias.h) is the
// paper's remedy. Head sharing (GQA/MQA) works for qkv and kv: q keeps H heads while k and v get Hkv.
#pragma once
#include "nn/attention/attention.h"

namespace qkvlab {

struct QKVAttention : Attention {  // paper: QKV, the standard three projections
  Linear q, k, v;
  QKVAttention(const AttentionConfig& cfg, Generator& gen)
      : Attention(cfg, gen), q(cfg.d_model, cfg.d_model, gen), k(cfg.d_model, cfg.kv() * cfg.head_dim(), gen),
        v(cfg.d_model, cfg.kv() * cfg.head_dim(), gen) {
    register_module("q", q);
    register_module("k", k);
    register_module("v", v);
  }
  Projections project(const Tensor& x) override { return {q(x), k(x), v(x)}; }  // (B,T,C) -> three projections
  std::string type_name() const override { return "QKVAttention"; }
};

struct SharedKVAttention : Attention {  // paper: Q-K=V. V is K: one tensor cached instead of two
  Linear q, k;
  SharedKVAttention(const AttentionConfig& cfg, Generator& gen)
      : Attention(cfg, gen), q(cfg.d_model, cfg.d_model, gen), k(cfg.d_model, cfg.kv() * cfg.head_dim(), gen) {
    register_module("q", q);
    register_module("k", k);
  }
  Projections project(const Tensor& x) override {
    Tensor key = k(x);          // (B,T,Hkv*D)
    return {q(x), key, key};    // the gradient from both uses of `key` adds up
  }
  std::string type_name() const override { return "SharedKVAttention"; }
};

struct SharedQKAttention : Attention {  // paper: Q=K-V. Q is K, so scores are symmetric
  Linear k, v;
  SharedQKAttention(const AttentionConfig& cfg, Generator& gen)
      : Attention(cfg, gen), k(cfg.d_model, cfg.d_model, gen), v(cfg.d_model, cfg.d_model, gen) {
    check(cfg.kv() == cfg.n_heads, "Q=K-V: queries are keys, so kv_heads must equal heads (", cfg.n_heads,
          "), got ", cfg.kv());
    register_module("k", k);
    register_module("v", v);
  }
  Projections project(const Tensor& x) override {
    Tensor key = k(x);          // (B,T,C)
    return {key, key, v(x)};
  }
  std::string type_name() const override { return "SharedQKAttention"; }
};

struct SingleProjectionAttention : Attention {  // paper: Q=K=V. One projection plays all three parts
  Linear k;
  SingleProjectionAttention(const AttentionConfig& cfg, Generator& gen)
      : Attention(cfg, gen), k(cfg.d_model, cfg.d_model, gen) {
    check(cfg.kv() == cfg.n_heads, "Q=K=V: queries are keys, so kv_heads must equal heads (", cfg.n_heads,
          "), got ", cfg.kv());
    register_module("k", k);
  }
  Projections project(const Tensor& x) override {
    Tensor key = k(x);          // (B,T,C)
    return {key, key, key};
  }
  std::string type_name() const override { return "SingleProjectionAttention"; }
};

}  // namespace qkvlab
