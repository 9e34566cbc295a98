// bench scaling: training step time vs context and vs width (d_model), for a few variants (QKV against Q-K=V by
// default), one process, the current thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qkvlab::bench {

struct ScalingOptions {
  std::vector<std::string> variants;
  std::vector<int64_t> contexts, widths;  // the two sweeps
  int64_t batch = 8, layers = 2, heads = 4, base_context = 128, base_width = 128;
  int steps = 3, warmup = 1;
};

struct ScalingPoint {
  std::string sweep;  // "context" or "width"
  int64_t context = 0, width = 0;
  std::vector<double> step_ms;  // per variant (options order): median ms of `steps` steps after `warmup`
  std::vector<int64_t> params;  // per variant
};
// The context sweep (at base_width), then the width sweep (at base_context), on the small preset's recipe.
std::vector<ScalingPoint> measure_scaling(const ScalingOptions& o);

}  // namespace qkvlab::bench
