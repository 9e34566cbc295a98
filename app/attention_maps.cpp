#include "app/attention_maps.h"

#include "app/common.h"

#include <algorithm>
#include <cmath>

#include "plot/plot.h"
#include "models/data.h"

namespace qkvlab::app {

std::string in_vocabulary(const ModelConfig& cfg, const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    if (std::find(cfg.vocab.begin(), cfg.vocab.end(), int(c)) != cfg.vocab.end()) out += char(c);
  return out;
}

ModelInput make_input(const TransformerModel& model, const std::string& text, int64_t index, uint64_t seed,
                      const std::string& data_dir) {
  const ModelConfig& cfg = model.config();
  ModelInput in;
  if (cfg.task == "lm") {
    check(!text.empty(), "attention: an LM needs --input TEXT");
    ByteTokenizer tok = ByteTokenizer::from_vocab(cfg.vocab);
    std::vector<int64_t> ids = tok.encode(text);
    check(int64_t(ids.size()) <= cfg.context, "attention: the input has ", ids.size(),
          " bytes but the model's context is ", cfg.context);
    in.x = Array::from_vector(ids, {1, int64_t(ids.size())});
    for (unsigned char c : text) in.labels.push_back(c >= 33 && c < 127 ? std::string(1, char(c)) : "_");
    in.description = "\"" + text + "\"";
  } else if (cfg.task == "fmnist") {
    ImageSet test = load_fashion_mnist_split(data_dir, false);
    check(index >= 0 && index < test.size(), "attention: --index ", index, " is outside the ", test.size(),
          " test images");
    in.x = test.images.narrow(0, index, 1).contiguous();
    in.labels.push_back("CLS");
    for (int i = 0; i < 16; ++i) in.labels.push_back(std::to_string(i));
    in.description = "test image " + std::to_string(index) + " (" +
                     fashion_mnist_classes()[size_t(test.labels.to_ints()[size_t(index)])] + ")";
  } else {
    std::vector<int64_t> digits;
    if (text.empty()) {
      SyntheticSplits s = make_synthetic_splits(parse_task(cfg.task), cfg.context, seed, 1, 1);
      digits = s.test.x.to_ints();
    } else {
      for (char c : text) {
        if (c == ' ' || c == ',') continue;
        check(c >= '0' && c <= '9', "attention: a ", cfg.task, " model reads digits 0-9, got '", std::string(1, c), "'");
        digits.push_back(c - '0');
      }
    }
    check(int64_t(digits.size()) == cfg.context, "attention: the ", cfg.task, " model reads ", cfg.context,
          " digits, got ", digits.size());
    in.x = Array::from_vector(digits, {1, cfg.context});
    for (int64_t d : digits) in.labels.push_back(std::to_string(d));
    in.description = "digits";
    for (int64_t d : digits) in.description += char('0' + d);
  }
  return in;
}

std::vector<HeadMap> attention_maps(TransformerModel& model, const ModelInput& input, const std::string& out_dir,
                                    const std::string& prefix) {
  NoGradGuard no_grad;
  model.eval();
  std::vector<AttentionMaps> maps;
  if (auto* g = dynamic_cast<GPT*>(&model)) g->forward(input.x, nullptr, &maps);
  else if (auto* e = dynamic_cast<Encoder*>(&model)) e->forward(input.x, &maps);
  else dynamic_cast<ViT&>(model).forward(input.x, &maps);
  std::vector<HeadMap> out;
  const std::string variant = model.config().variant.paper_name();
  const std::vector<double> temps = pe_temperatures(model);  // one per layer for (X)+, else empty
  for (size_t l = 0; l < maps.size(); ++l) {
    const Array& S = maps[l].scores;  // (1,H,T,T)
    const Array& P = maps[l].probs;
    const int64_t H = S.size(1), T = S.size(2);
    for (int64_t h = 0; h < H; ++h) {
      HeadMap m;
      m.layer = int64_t(l);
      m.head = h;
      Array s = S.select(0, 0).select(0, h);                    // (T,T)
      m.asymmetry = max_all(abs(sub(s, s.transpose(0, 1))));   // max |S - S^T|
      m.has_pe = l < temps.size();
      if (m.has_pe) m.pe_temperature = temps[l];
      if (!out_dir.empty()) {
        m.png = out_dir + "/" + prefix + "layer" + std::to_string(l) + "_head" + std::to_string(h) + ".png";
        plot::HeatmapOptions o;
        char title[160];
        std::snprintf(title, sizeof title, "%s  layer %zu head %lld  max|S-S^T| = %.3g%s", variant.c_str(), l,
                      (long long)h, m.asymmetry,
                      m.has_pe ? ("  sum w = " + fixed(m.pe_temperature, 2)).c_str() : "");
        o.title = title;
        o.row_labels = input.labels;
        o.col_labels = input.labels;
        Array p = P.select(0, 0).select(0, h).contiguous();
        o.vmax = float(max_all(p));  // the colour scale spans this map's range, so diffuse heads still show shape
        plot::write_heatmap(m.png, p.to_floats(), int(T), int(T), o);
      }
      out.push_back(m);
    }
  }
  return out;
}

}  // namespace qkvlab::app
