// The paper's 2D positional score bias, the "(X)+" variants. Q=K-V and Q=K=V score with k_i . k_j, which is
// symmetric in i and j, so "a attends to b" cannot differ from "b attends to a". This module breaks the symmetry:
//
//   S'[i,j] = sum_c w_c (S[i,j] + P[i,j,c]) + b        (one w (m) and b per layer, shared by the heads)
//
// with a fixed sinusoidal P (n x n x m): its first m/2 channels encode the query position i, the rest the key
// position j (within each half, channel 2k is sin(pos f_k), 2k+1 is cos(pos f_k), f_k = 10000^(-2k/h), h = m/2),
// so P[i,j] != P[j,i]. Because the map is linear it splits into
//
//   S'[i,j] = (sum_c w_c) S[i,j] + a(i) + c(j) + b,    a(i) = sum_{c<m/2} w_c P[i,.,c],  c(j) likewise,
//
// which is how it is computed: two (n x m/2) tables instead of an n x n x m tensor. sum_c w_c acts as a learned
// temperature on S, and its sign matters: with sum w < 0 softmax prefers the key LEAST like the query, which is how
// a symmetric head (q = k) can send every position to a partner that is not itself (docs/RESULTS.md, "The (X)+
// temperature"). b is one number added to every score, which softmax ignores: its gradient is zero up to rounding,
// but Adam divides a step by the gradient's own size, so that rounding noise moves b a little (it drifts slightly
// from 0 during training; harmless, since no output depends on it). It is kept because the paper's formula has it.
//
// Initialisation: b = 0 and w = 1/m here (sum w = +1, the identity on S); the model then redraws w as its
// config.pe_init says (models/transformer.h): normal N(0, 0.02) (the authors', the default), identity 1/m,
// negative -1/m. (The paper's precursor used Xavier-uniform.)
#pragma once
#include "nn/module.h"

namespace qkvlab {

struct PositionalScoreBias : Module {
  Tensor weight;  // (m)
  Tensor bias;    // (1)
  Array query_table, key_table;  // (n, m/2) and (n, m - m/2): P's query-position and key-position channels
  int64_t channels, max_positions;

  PositionalScoreBias(int64_t max_positions, int64_t channels = 10);
  // scores (B, H, T, S); the queries are positions q_offset .. q_offset+T-1, the keys 0 .. S-1.
  Tensor forward(const Tensor& scores, int64_t q_offset) const;
  // P[i, j, c], for tests and pictures.
  double P(int64_t i, int64_t j, int64_t c) const;
  std::string type_name() const override { return "PositionalScoreBias"; }
  std::string extra_repr() const override;
};

}  // namespace qkvlab
