#include "nn/attention/positional_bias.h"

#include <cmath>

#include "autograd/ops.h"

namespace qkvlab {

namespace {
// Sinusoidal encoding of positions 0..n-1 in h channels: channel 2k = sin(pos f_k), 2k+1 = cos(pos f_k).
Array sinusoid_table(int64_t n, int64_t h) {
  Array t = Array::zeros({n, h}, DType::F64);  // float64 master copy; forward() converts to the model dtype
  for (int64_t pos = 0; pos < n; ++pos)
    for (int64_t c = 0; c < h; ++c) {
      int64_t k = c / 2;
      double f = std::pow(10000.0, -2.0 * double(k) / double(h));
      t.set({pos, c}, c % 2 == 0 ? std::sin(double(pos) * f) : std::cos(double(pos) * f));
    }
  return t;
}
}  // namespace

PositionalScoreBias::PositionalScoreBias(int64_t n, int64_t m) : channels(m), max_positions(n) {
  check(m >= 2, "positional score bias: needs at least 2 channels, got ", m);
  check(n >= 1, "positional score bias: needs at least 1 position, got ", n);
  weight = Tensor(Array::full({m}, 1.0 / double(m)));  // sum w = 1: starts as the identity on S
  bias = Tensor(Array::zeros({1}));
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  query_table = sinusoid_table(n, m / 2);
  key_table = sinusoid_table(n, m - m / 2);
}

double PositionalScoreBias::P(int64_t i, int64_t j, int64_t c) const {
  int64_t half = channels / 2;
  return c < half ? query_table.at({i, c}) : key_table.at({j, c - half});
}

Tensor PositionalScoreBias::forward(const Tensor& scores, int64_t q_offset) const {
  const int64_t T = scores.size(-2), S = scores.size(-1), half = channels / 2;
  check(q_offset + T <= max_positions && S <= max_positions, "positional score bias: positions up to ",
        std::max(q_offset + T, S), " exceed the table of ", max_positions);
  DType dt = scores.dtype();
  Tensor pq(query_table.narrow(0, q_offset, T).to(dt));              // (T, m/2) query-position channels
  Tensor pk(key_table.narrow(0, 0, S).to(dt));                       // (S, m - m/2) key-position channels
  Tensor wq = slice(weight, 0, 0, half), wk = slice(weight, 0, half, channels);
  Tensor row = reshape(matmul(pq, wq), {T, 1});                      // a(i): (T, 1)
  Tensor col = matmul(pk, wk);                                       // c(j): (S)
  Tensor s = mul(scores, sum(weight));                               // (sum_c w_c) S: (B,H,T,S)
  return add(add(add(s, row), col), bias);                           // + a(i) + c(j) + b, broadcast
}

std::string PositionalScoreBias::extra_repr() const {
  return "channels=" + std::to_string(channels) + ", positions=" + std::to_string(max_positions);
}

}  // namespace qkvlab
