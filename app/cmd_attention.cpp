// qkvlab attention: attention maps of a checkpoint on one input (PNG per layer and head) and the asymmetry
// max |S - S^T| of each head's pre-softmax scores.
#include <sys/stat.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "app/attention_maps.h"
#include "app/common.h"
#include "models/checkpoint.h"
#include "models/data.h"

namespace qkvlab::app {

namespace {
struct AttentionArgs {
  CommonFlags common;
  std::string ckpt, input, out = "attention", data_dir = kFashionMnistDir;
  int64_t index = 0;
};

void run(const AttentionArgs& a) {
  apply_common_flags(a.common);
  auto model = load_model(a.ckpt);
  ModelInput in = make_input(*model, a.input, a.index, a.common.seed, a.data_dir);
  make_dirs(a.out);
  std::vector<HeadMap> maps = attention_maps(*model, in, a.out, "");
  const ModelConfig& cfg = model->config();
  if (a.common.json) {
    nlohmann::ordered_json j{{"checkpoint", a.ckpt}, {"variant", cfg.variant.id()},
                             {"paper_name", cfg.variant.paper_name()}, {"input", in.description}};
    for (auto& m : maps) {
      j["heads"].push_back({{"layer", m.layer}, {"head", m.head}, {"asymmetry", m.asymmetry}, {"png", m.png}});
      if (m.has_pe) j["heads"].back()["pe_temperature"] = m.pe_temperature;
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::printf("%s (%s) on %s\n\n", cfg.variant.id().c_str(), cfg.variant.paper_name().c_str(),
              in.description.c_str());
  std::vector<std::vector<std::string>> rows;
  const bool pe = !maps.empty() && maps[0].has_pe;
  for (auto& m : maps) {
    char asym[32];
    std::snprintf(asym, sizeof asym, "%.4g", m.asymmetry);
    rows.push_back({std::to_string(m.layer), std::to_string(m.head), asym, m.png});
    // (X)+: the layer's sum w, the learned temperature on S (negative: the head prefers unlike keys)
    if (pe) rows.back().insert(rows.back().begin() + 3, (m.pe_temperature >= 0 ? "+" : "") + fixed(m.pe_temperature, 3));
  }
  std::vector<std::string> head = {"layer", "head", "max abs(S - S^T)", "map"};
  if (pe) head.insert(head.begin() + 3, "sum w");
  std::printf("%s", markdown_table(head, rows).c_str());
}
}  // namespace

void register_attention(CLI::App& app) {
  auto args = std::make_shared<AttentionArgs>();
  CLI::App* cmd = app.add_subcommand(
      "attention", "Attention maps (PNG per layer and head) and the asymmetry max |S - S^T| of the scores");
  cmd->add_option("--ckpt", args->ckpt, "run directory or model.safetensors")->required();
  cmd->add_option("--input", args->input, "LM: the text; synthetic: the digits (default: a test sequence)");
  cmd->add_option("--index", args->index, "fmnist: which test image")->default_val(0);
  cmd->add_option("--out", args->out, "folder for the PNG files")->default_val("attention");
  cmd->add_option("--data-dir", args->data_dir, "fmnist: the folder with the IDX files")
      ->default_val(kFashionMnistDir);
  add_common_flags(cmd, args->common);
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
