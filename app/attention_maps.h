// Attention maps of a model on one input: one PNG heatmap per layer and head (query rows, key columns), and the
// asymmetry max |S - S^T| of each head's pre-softmax scores S (after scaling and any (X)+ bias, before the mask):
// exactly 0 for Q=K-V and Q=K=V, whose scores k_i . k_j are symmetric.
#pragma once
#include <string>
#include <vector>

#include "models/transformer.h"

namespace qkvlab::app {

struct HeadMap {
  int64_t layer = 0, head = 0;
  double asymmetry = 0.0;  // max |S - S^T|
  bool has_pe = false;     // (X)+: the layer's learned temperature sum w (positional_bias.h)
  double pe_temperature = 0.0;
  std::string png;         // the file written ("" when no pictures were asked for)
};

struct ModelInput {
  Array x;                          // what the model takes: ids (1,T) or an image (1,1,28,28)
  std::vector<std::string> labels;  // one per position, for the map's ticks
  std::string description;
};

// LM: text (bytes in the vocabulary, at most `context`); synthetic: a digit string of the model's length, or
// empty for the first test sequence of `seed`; fmnist: image `index` of the test set in data_dir.
ModelInput make_input(const TransformerModel& model, const std::string& text, int64_t index, uint64_t seed,
                      const std::string& data_dir);

// Runs the model on the input and writes <out_dir>/<prefix>layer<L>_head<H>.png for every head (when out_dir is
// not empty); returns one entry per head.
std::vector<HeadMap> attention_maps(TransformerModel& model, const ModelInput& input, const std::string& out_dir,
                                    const std::string& prefix);

}  // namespace qkvlab::app
