#include "models/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace qkvlab {

int64_t pick_token(const std::vector<double>& logits, double temperature, int64_t top_k, Generator& gen) {
  check(!logits.empty(), "sample: empty logits");
  check(temperature >= 0 && std::isfinite(temperature), "sample: temperature must be >= 0, got ", temperature);
  const int64_t V = int64_t(logits.size());
  if (temperature == 0.0) return std::max_element(logits.begin(), logits.end()) - logits.begin();  // first max
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  int64_t k = top_k > 0 ? std::min(top_k, V) : V;
  // Most likely first; stable, so equal logits keep id order.
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  double top = logits[order[0]], total = 0.0;
  std::vector<double> p(k);
  for (int64_t i = 0; i < k; ++i) total += p[i] = std::exp((logits[order[i]] - top) / temperature);
  double u = gen.uniform() * total;
  for (int64_t i = 0; i < k; ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[k - 1];
}

SampleResult sample(GPT& model, const std::vector<int64_t>& prompt, const SampleOptions& o) {
  check(!prompt.empty(), "generate: the prompt is empty");
  const int64_t context = model.config().context;
  check(int64_t(prompt.size()) <= context, "generate: the prompt has ", prompt.size(),
        " tokens but the model's context is ", context);
  NoGradGuard no_grad;
  model.eval();
  Generator gen(o.seed);
  SampleResult r;
  KVCache cache;
  auto t0 = std::chrono::steady_clock::now();
  auto last_row = [](const Array& logits) {  // (1, T, V) -> the last position's logits
    return logits.select(1, logits.size(1) - 1).select(0, 0).to_vector();
  };
  // The tokens the model sees now; positions restart at 0 whenever the window slides.
  std::vector<int64_t> window = prompt;
  auto run_window = [&] {  // a full forward over the window (fills the cache when there is one)
    cache.reset();
    return last_row(model.forward(Array::from_vector(window, {1, int64_t(window.size())}),
                                  o.use_cache ? &cache : nullptr).data());
  };
  std::vector<double> logits = run_window();
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    int64_t next = pick_token(logits, o.temperature, o.top_k, gen);
    r.tokens.push_back(next);
    window.push_back(next);
    if (i + 1 == o.max_new_tokens) break;
    if (int64_t(window.size()) >= context) {  // no position left for the next token: keep the last half
      window.erase(window.begin(), window.end() - std::max<int64_t>(1, context / 2));
      ++r.window_slides;
      logits = run_window();
    } else if (o.use_cache) {
      logits = last_row(model.forward(Array::from_vector(std::vector<int64_t>{next}, {1, 1}), &cache).data());
    } else {
      logits = run_window();
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cache_bytes = cache.bytes();
  return r;
}

}  // namespace qkvlab
