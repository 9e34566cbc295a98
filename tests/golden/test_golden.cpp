// Golden end-to-end tests: qkvlab against PyTorch.
//
// tests/golden/data/*.safetensors were written by tests/golden/make_golden.py, a from-scratch PyTorch version of
// the GPT, the Encoder and the ViT with every attention variant (see tests/golden/README.md). Each file holds a
// model config (metadata), the weights under qkvlab's names, an input, targets, and PyTorch's logits, loss and
// d loss / d parameter for every parameter, all in float64.
//
// For each file: build the model from the config, convert it to float64, load the weights, run the forward pass
// and model_loss() and backward(), and compare logits and loss (relative error <= 1e-7) and every gradient
// (<= 1e-6; tighter than the issue asks, since both sides run in float64). The relative error of a tensor is
// max|qkvlab - torch| / max|torch| (a max-norm, so that elements
// that happen to be near zero do not blow it up; the denominator is at least 1e-10, for gradients that are zero
// in exact arithmetic, like that of the (X)+ bias b, which only shifts every score of a softmax row; those pass
// on an absolute bound instead, kZeroAbsTol).
//
// Set QKVLAB_GOLDEN_VERBOSE=1 to print the largest error of each file.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "models/safetensors.h"
#include "models/transformer.h"
#include "tensor/platform.h"

using namespace qkvlab;

namespace {

// Every case make_golden.py writes: a missing file is a failure, not a skip.
const std::vector<std::string> kExpectedFiles = {
    "gpt_qkv",         "gpt_kv",          "gpt_qk",          "gpt_single",       "gpt_gqa2",
    "gpt_mqa",         "gpt_kv-gqa2",     "gpt_kv-mqa",      "gpt_qk_plus",      "gpt_single_plus",
    "encoder_qkv",     "encoder_kv",      "encoder_qk_plus", "encoder_single_plus",
    "vit_qkv",         "vit_kv",          "vit_qk_plus",     "vit_single_plus",
};

constexpr double kOutputTol = 1e-7;  // logits and loss (float64 on both sides agree to ~1e-15)
constexpr double kGradTol = 1e-6;    // parameter gradients
constexpr double kFloor = 1e-10;     // smallest denominator of a relative error
// A tensor that is zero in exact arithmetic (max |torch| < 1e-12: PyTorch's own rounding leaves ~1e-17..1e-15
// there) has no scale for a relative error: it passes when every |qkvlab - torch| <= 1e-12. Reordering a sum (a
// fused kernel) may move such rounding residue; a wrong formula gives errors of the size of the other gradients
// (~1e-3..1). A genuinely small gradient (1e-9, say) is still held to the relative bound.
constexpr double kZeroScale = 1e-12;
constexpr double kZeroAbsTol = 1e-12;

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string dirname_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// tests/golden/data, found from this source file's path. __FILE__ is relative when the Makefile compiles from the
// repository root ("tests/golden/test_golden.cpp"), so a relative path is also tried from the repository root as
// seen from the test binary (build/<mode>/qkvlab_tests).
std::string golden_dir() {
  if (const char* env = std::getenv("QKVLAB_GOLDEN_DIR")) return env;
  const std::string file = __FILE__;
  const std::string rel = dirname_of(file) + "/data";
  if (is_dir(rel) || (!file.empty() && file[0] == '/')) return rel;
  const std::string exe = qkvlab::executable_path();
  if (!exe.empty()) {
    std::string from_exe = dirname_of(dirname_of(dirname_of(exe))) + "/" + rel;  // build/<mode>/x -> root
    if (is_dir(from_exe)) return from_exe;
  }
  return rel;
}

std::vector<std::string> list_files(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string shape_text(const Shape& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? "," : "") << s[i];
  o << ")";
  return o.str();
}

// Relative error max|got - want| / max(max|want|, kFloor); NaN when any value is not finite.
struct Diff {
  double rel = 0, abs = 0, scale = 0;
  int64_t where = -1;  // flat index of the largest difference
};

Diff compare(const Array& got, const Array& want) {
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  Diff d;
  for (size_t i = 0; i < w.size(); ++i) {
    double e = std::fabs(g[i] - w[i]);
    if (!std::isfinite(g[i]) || !std::isfinite(w[i])) e = std::nan("");
    if (std::isnan(e) || e > d.abs) {
      d.abs = e;
      d.where = int64_t(i);
      if (std::isnan(e)) break;
    }
    d.scale = std::max(d.scale, std::fabs(w[i]));
  }
  d.rel = d.abs / std::max(d.scale, kFloor);
  return d;
}

bool is_reserved(const std::string& name) {
  return name == "input" || name == "target" || name == "logits" || name == "loss" || name.rfind("grad.", 0) == 0;
}

// The largest relative error seen in a group of tensors, and where.
// Tensors that are zero in exact arithmetic (max |torch| < kZeroScale: the gradient of the (X)+ bias b, and of the key
// bias in QKV, which adds the same q.b_k to a whole softmax row) are counted apart, by their absolute difference.
struct Worst {
  double rel = 0;
  std::string name;
  int zeros = 0;         // tensors that are zero in exact arithmetic
  double zero_abs = 0;   // their largest |qkvlab - torch|
};

// One file: returns "" when everything agrees, else a message naming the first tensor that differs.
// `out` and `grad` receive the largest relative errors of the outputs and of the gradients, for the summary.
std::string check_file(const std::string& path, Worst& out, Worst& grad) {
  Safetensors st = load_safetensors(path);
  if (!st.metadata.count("config")) return "no __metadata__ config";
  ModelConfig cfg = ModelConfig::from_json(st.metadata.at("config"));
  std::unique_ptr<TransformerModel> model = make_model(cfg, 1);
  model->to(DType::F64);

  NamedArrays weights;
  for (auto& [name, a] : st.tensors)
    if (!is_reserved(name)) weights.emplace_back(name, a);
  model->load_state_dict(weights);  // throws on a missing, extra or misshapen parameter

  const Array& x = st.get("input");
  const Array& y = st.get("target");

  // The logits, from the model's own forward.
  Tensor logits;
  if (auto* g = dynamic_cast<GPT*>(model.get())) logits = g->forward(x);
  else if (auto* e = dynamic_cast<Encoder*>(model.get())) logits = e->forward(x);
  else logits = dynamic_cast<ViT&>(*model).forward(x);

  // The loss and gradients through model_loss, as training computes them.
  StepResult r = model_loss(*model, x, y);
  if (r.loss.dtype() != DType::F64) return "loss is not float64: the model did not convert";
  r.loss.backward();

  std::ostringstream msg;
  msg.precision(3);
  auto report = [&](const std::string& name, const Array& got, const Array& want, double tol, Worst& worst) {
    if (got.shape() != want.shape()) {
      msg << name << ": shape " << shape_text(got.shape()) << ", PyTorch has " << shape_text(want.shape());
      return false;
    }
    Diff d = compare(got, want);
    const bool zero = d.scale < kZeroScale;
    if (zero ? !(d.abs <= kZeroAbsTol) : !(d.rel <= tol)) {
      if (zero)
        msg << name << " should be 0 (|torch| < " << kZeroScale << ") but differs by " << d.abs << " > "
            << kZeroAbsTol;
      else
        msg << name << " differs: relative error " << d.rel << " > " << tol << " (max |qkvlab - torch| = " << d.abs
            << " at flat index " << d.where << ", max |torch| = " << d.scale << "; qkvlab "
            << got.to_vector()[size_t(std::max<int64_t>(d.where, 0))] << ", torch "
            << want.to_vector()[size_t(std::max<int64_t>(d.where, 0))] << ")";
      return false;
    }
    if (zero) {
      ++worst.zeros;
      worst.zero_abs = std::max(worst.zero_abs, d.abs);
    } else if (d.rel >= worst.rel) {
      worst.rel = d.rel;
      worst.name = name;
    }
    return true;
  };

  if (!report("logits", logits.data(), st.get("logits"), kOutputTol, out)) return msg.str();
  if (!report("loss", r.loss.data().reshape(st.get("loss").shape()), st.get("loss"), kOutputTol, out))
    return msg.str();

  // Gradients from the loss backwards (reverse registration order): the first one that differs is the one closest
  // to where a wrong backward formula entered; every tensor before it in the model is then wrong too.
  auto named = model->named_parameters();
  std::set<std::string> params;
  std::vector<std::string> bad;
  std::string first;
  for (auto it = named.rbegin(); it != named.rend(); ++it) {
    const std::string& name = it->first;
    params.insert(name);
    const std::string gname = "grad." + name;
    if (!st.has(gname)) return "the file has no " + gname;
    if (!it->second.grad().defined()) return name + ": qkvlab computed no gradient (backward did not reach it)";
    if (!report(gname, it->second.grad(), st.get(gname), kGradTol, grad)) {
      if (first.empty()) first = msg.str();
      bad.push_back(name);
    }
  }
  if (!bad.empty()) {
    std::ostringstream all;
    all << first << "; " << bad.size() << " of " << named.size() << " gradients differ:";
    for (size_t i = 0; i < bad.size() && i < 6; ++i) all << " " << bad[i];
    if (bad.size() > 6) all << " ...";
    return all.str();
  }
  for (auto& [name, a] : st.tensors)
    if (name.rfind("grad.", 0) == 0 && !params.count(name.substr(5)))
      return "the file has " + name + " but the model has no parameter " + name.substr(5);
  return "";
}

}  // namespace

TEST_CASE("golden: every model and variant matches PyTorch (logits, loss, every gradient)", "[golden]") {
  const std::string dir = golden_dir();
  INFO("golden files in " << dir << " (regenerate: /usr/bin/python3 tests/golden/make_golden.py)");
  std::vector<std::string> files = list_files(dir, ".safetensors");
  REQUIRE(!files.empty());
  for (const std::string& want : kExpectedFiles) {
    INFO("expected golden file " << want << ".safetensors");
    CHECK(std::find(files.begin(), files.end(), want + ".safetensors") != files.end());
  }

  const bool verbose = std::getenv("QKVLAB_GOLDEN_VERBOSE") != nullptr;
  for (const std::string& f : files) {
    INFO("golden file " << f);
    Worst out, grad;
    std::string problem;
    try {
      problem = check_file(dir + "/" + f, out, grad);
    } catch (const std::exception& e) {
      problem = std::string("error: ") + e.what();
    }
    INFO(problem);
    CHECK(problem.empty());
    if (verbose && problem.empty())
      std::printf("golden %-32s outputs %.1e (%s)  gradients %.1e (%s); %d zero gradients, |diff| <= %.0e\n",
                  f.c_str(), out.rel, out.name.c_str(), grad.rel, grad.name.c_str(), grad.zeros, grad.zero_abs);
  }
}
