#include "models/checkpoint.h"

#include <sys/stat.h>

#include <cstring>

#include "models/safetensors.h"

namespace qkvlab {

namespace {
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}
}  // namespace

std::string model_file(const std::string& ckpt) {
  check(!ckpt.empty(), "checkpoint: no path given");
  check(exists(ckpt), "checkpoint: ", ckpt, " does not exist");
  if (is_dir(ckpt)) {
    std::string f = ckpt + (ckpt.back() == '/' ? "" : "/") + "model.safetensors";
    check(exists(f), "checkpoint: ", ckpt, " is a directory without model.safetensors");
    return f;
  }
  return ckpt;
}

void save_model(const std::string& path, const TransformerModel& model, int64_t step) {
  std::map<std::string, std::string> meta{{"config", model.config().to_json()}};
  if (step >= 0) meta["step"] = std::to_string(step);
  save_safetensors(path, model.state_dict(), meta);
}

ModelConfig read_config(const std::string& ckpt) {
  std::string file = model_file(ckpt);
  Safetensors st = load_safetensors(file);
  auto it = st.metadata.find("config");
  check(it != st.metadata.end(), "checkpoint: ", file, " has no __metadata__ config (not a qkvlab checkpoint?)");
  try {
    return ModelConfig::from_json(it->second);
  } catch (const Error& e) {
    fail(file, ": ", e.what());
  }
}

std::unique_ptr<TransformerModel> load_model(const std::string& ckpt) {
  std::string file = model_file(ckpt);
  Safetensors st = load_safetensors(file);
  auto it = st.metadata.find("config");
  check(it != st.metadata.end(), "checkpoint: ", file, " has no __metadata__ config (not a qkvlab checkpoint?)");
  ModelConfig cfg;
  try {
    cfg = ModelConfig::from_json(it->second);
  } catch (const Error& e) {
    fail(file, ": ", e.what());
  }
  auto model = make_model(cfg, 0);
  try {
    model->load_state_dict(st.tensors);
  } catch (const Error& e) {
    fail(file, ": ", e.what());
  }
  return model;
}

Array rng_to_array(const Generator::State& s) {
  int64_t spare_bits;
  std::memcpy(&spare_bits, &s.spare, sizeof spare_bits);
  std::vector<int64_t> w{int64_t(s.s[0]), int64_t(s.s[1]), int64_t(s.s[2]), int64_t(s.s[3]), spare_bits,
                         s.has_spare ? 1 : 0};
  return Array::from_vector(w, {6});
}

Generator::State rng_from_array(const Array& a, const std::string& what) {
  check(a.dtype() == DType::I64 && a.shape() == Shape{6}, "optimizer state: ", what,
        " must be 6 int64 words, got ", dtype_name(a.dtype()), " ", a.shape());
  std::vector<int64_t> w = a.to_ints();
  Generator::State s{};
  for (int i = 0; i < 4; ++i) s.s[i] = uint64_t(w[i]);
  std::memcpy(&s.spare, &w[4], sizeof s.spare);
  s.has_spare = w[5] != 0;
  return s;
}

void save_training_state(const std::string& path, const Optimizer& opt, const TrainingState& st) {
  NamedArrays tensors = opt.state();
  tensors.emplace_back("rng.data", rng_to_array(st.data_rng));
  tensors.emplace_back("rng.model", rng_to_array(st.model_rng));
  tensors.emplace_back("sampler", Array::from_vector(st.sampler, {int64_t(st.sampler.size())}));
  tensors.emplace_back("train.window_loss", Array::from_vector(std::vector<double>{st.window_loss}, {1}));
  tensors.emplace_back("train.window_n", Array::from_vector(std::vector<int64_t>{st.window_n}, {1}));
  save_safetensors(path, tensors, {{"optimizer", opt.name()}, {"step", std::to_string(st.step)}});
}

TrainingState load_training_state(const std::string& path, Optimizer& opt) {
  Safetensors st = load_safetensors(path);
  TrainingState out;
  NamedArrays opt_state;
  for (auto& [n, a] : st.tensors) {
    if (n == "rng.data") out.data_rng = rng_from_array(a, n);
    else if (n == "rng.model") out.model_rng = rng_from_array(a, n);
    else if (n == "sampler") {
      check(a.dtype() == DType::I64 && a.ndim() == 1, path, ": 'sampler' must be a 1-D int64 tensor");
      out.sampler = a.to_ints();
    } else if (n == "train.window_loss") {
      check(a.dtype() == DType::F64 && a.numel() == 1, path, ": 'train.window_loss' must be one float64");
      out.window_loss = a.item();
    } else if (n == "train.window_n") {
      check(a.dtype() == DType::I64 && a.numel() == 1, path, ": 'train.window_n' must be one int64");
      out.window_n = a.to_ints()[0];
    }
    else opt_state.emplace_back(n, a);
  }
  check(st.has("rng.data") && st.has("rng.model"), path, ": missing the generator states rng.data / rng.model");
  auto it = st.metadata.find("optimizer");
  check(it == st.metadata.end() || it->second == opt.name(), path, ": optimizer state is for ",
        it == st.metadata.end() ? "" : it->second, ", this run uses ", opt.name());
  try {
    opt.load_state(opt_state);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  out.step = opt.steps();
  return out;
}

}  // namespace qkvlab
