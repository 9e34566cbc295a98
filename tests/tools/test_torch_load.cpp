// tools/torch_load.py: a qkvlab GPT checkpoint of every attention variant, loaded into PyTorch, gives the logits
// qkvlab gives. The test writes, per variant, a checkpoint with random (non-init) weights and a file with an input
// and qkvlab's logits for it, then runs the tool with --check on all of them. It also makes sure the check can
// fail: one weight changed in one checkpoint must be caught. Skipped (with a warning) when /usr/bin/python3 cannot
// import torch (Debian: python3-torch, `bash tools/deps.sh --bench`).
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "models/checkpoint.h"
#include "models/safetensors.h"
#include "tests/test_util.h"

using namespace qkvlab;

namespace {

const char* kTool = "tools/torch_load.py";

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Exit status of a shell command, its output in `log`.
int run(const std::string& cmd, const std::string& log) {
  int status = std::system((cmd + " >" + log + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A GPT of this variant with weights far from the training init (every parameter matters, attention is peaked).
std::unique_ptr<TransformerModel> random_gpt(const std::string& variant, uint64_t seed) {
  ModelConfig c;
  c.task = "lm";
  c.variant = parse_variant(variant);
  c.d_model = 16;
  c.n_heads = 4;
  c.n_layers = 2;
  c.context = 12;
  for (int b : {'\n', ' ', 'a', 'b', 'c', 'd', 'e', 'h', 'o', 't'}) c.vocab.push_back(b);
  c.vocab_size = int64_t(c.vocab.size());
  c.resolve();
  auto m = make_model(c, seed);
  Generator gen(seed + 100);
  for (auto& p : m->parameters()) {
    Array d = p.data();
    d.copy_(Array::normal(d.shape(), gen, 0.1, 0.4));
  }
  return m;
}

}  // namespace

TEST_CASE("torch_load: PyTorch gives qkvlab's logits for every attention variant", "[torch_load][slow]") {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    WARN("skipped: /usr/bin/python3 cannot import torch (install python3-torch: bash tools/deps.sh --bench)");
    return;
  }
  if (!std::filesystem::exists(kTool)) {
    WARN("skipped: " << kTool << " not found; run the tests from the repository root (make test)");
    return;
  }
  testing::TempDir dir("torch_load");
  const std::vector<std::string> variants = {"qkv",   "kv",  "qk",       "single",   "qkv+",  "kv+",
                                             "qk+",   "single+", "gqa:2", "mqa",  "kv-gqa:2", "kv-mqa"};
  std::string args;
  Generator gen(7);
  for (size_t i = 0; i < variants.size(); ++i) {
    auto model = random_gpt(variants[i], 40 + i);
    const std::string run_dir = dir.sub("v" + std::to_string(i));
    save_model(run_dir + "/model.safetensors", *model);
    Array ids = Array::empty({2, 12}, DType::I64);
    for (int64_t t = 0; t < ids.numel(); ++t) ids.data<int64_t>()[t] = gen.randint(0, 10);
    Tensor logits = dynamic_cast<GPT&>(*model).forward(ids);  // (2, 12, 10)
    save_safetensors(run_dir + "/ref.safetensors", {{"input", ids}, {"logits", logits.data()}});
    args += " " + run_dir + " --check " + run_dir + "/ref.safetensors";
  }
  const std::string log = dir.file("log.txt");
  const std::string cmd = "/usr/bin/python3 " + std::string(kTool) + args;
  int rc = run(cmd, log);
  std::string out = read_file(log);
  INFO(out);
  REQUIRE(rc == 0);
  for (const auto& v : variants) CHECK(out.find(": " + v + " (") != std::string::npos);

  // A checkpoint that differs from the reference in one bias must be reported (exit status 1, "MISMATCH").
  auto model = random_gpt("kv+", 40 + 5);
  model->named_parameters().back().second.data().data<float>()[0] += 0.5f;  // ln_f.bias[0]
  save_model(dir.file("v5/model.safetensors"), *model);
  rc = run("/usr/bin/python3 " + std::string(kTool) + " " + dir.file("v5") + " --check " +
               dir.file("v5/ref.safetensors"),
           log);
  out = read_file(log);
  INFO(out);
  CHECK(rc == 1);
  CHECK(out.find("MISMATCH") != std::string::npos);

  // Bad input: one line on stderr, exit status 2.
  rc = run("/usr/bin/python3 " + std::string(kTool) + " " + dir.file("nothing-here"), log);
  CHECK(rc == 2);
  CHECK(read_file(log).find("torch_load: error: no checkpoint at") != std::string::npos);
}
