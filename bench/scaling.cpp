#include "bench/scaling.h"

#include "bench/harness.h"
#include "bench/train.h"
#include "models/config.h"

namespace qkvlab::bench {

std::vector<ScalingPoint> measure_scaling(const ScalingOptions& o) {
  std::vector<ScalingPoint> points;
  for (int64_t c : o.contexts) points.push_back({"context", c, o.base_width, {}, {}});
  for (int64_t w : o.widths) points.push_back({"width", o.base_context, w, {}, {}});
  for (ScalingPoint& pt : points)
    for (const auto& v : o.variants) {
      ModelConfig cfg = gpt_preset("small");
      cfg.vocab_size = 65, cfg.context = pt.context, cfg.d_model = pt.width, cfg.n_layers = o.layers;
      cfg.n_heads = o.heads;
      cfg.variant = parse_variant(v);
      cfg.resolve();
      const TrainCell c = train_cell(cfg, o.batch, o.warmup, o.steps, false);
      pt.step_ms.push_back(1e3 * stats(c.step_s).median);
      pt.params.push_back(c.params);
    }
  return points;
}

}  // namespace qkvlab::bench
