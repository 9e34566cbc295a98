// `qkvlab train --profile`: the table on stderr and the rows in the --json output, with per-step call counts that
// follow from the model (a 1-layer GPT makes the same ops every step).
#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include "tensor/platform.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
}  // namespace

TEST_CASE("cli: train --profile prints the op table on stderr and puts its rows in --json", "[cli][profile]") {
  qkvlab::testing::TempDir tmp("profile_cli");
  const std::string corpus = tmp.file("corpus.txt");
  std::ofstream(corpus) << qkvlab::testing::english_like_text(4000, 3);
  const std::string bin = (std::filesystem::path(qkvlab::executable_path()).parent_path() / "qkvlab").string();
  REQUIRE(::access(bin.c_str(), X_OK) == 0);
  const std::string cmd = bin + " train --task lm --data " + corpus +
                          " --context 16 --d-model 16 --heads 2 --layers 1 --batch 4 --steps 3 --eval-examples 4"
                          " --threads 1 --json --profile --out " + tmp.file("run") + " >" + tmp.file("out") +
                          " 2>" + tmp.file("err");
  REQUIRE(std::system(cmd.c_str()) == 0);
  const std::string err = slurp(tmp.file("err"));
  INFO("stderr: " << err);
  CHECK_THAT(err, Contains("profile: 3 training steps"));
  CHECK_THAT(err, Contains("MatmulBackward"));
  CHECK_THAT(err, Contains("LayerNormBackward"));

  nlohmann::json j = nlohmann::json::parse(slurp(tmp.file("out")));
  const auto& p = j.at("profile");
  CHECK(p.at("steps") == 3);
  CHECK(p.at("step_seconds").get<double>() > 0);
  std::map<std::string, int64_t> calls;
  double share = 0;
  for (const auto& r : p.at("rows")) {
    calls[r.at("phase").get<std::string>() + " " + r.at("op").get<std::string>()] = r.at("calls").get<int64_t>();
    share += r.at("share").get<double>();
  }
  // Per step: 2 LayerNorms in the block + ln_f; one MLP (its second layer on the GELU, gelu_linear); one cross-entropy; one AdamW step. The final eval is not
  // counted (the profiler pauses while the trainer evaluates).
  CHECK(calls["forward layer_norm"] == 3 * 3);
  CHECK(calls["backward LayerNormBackward"] == 3 * 3);
  CHECK(calls["forward gelu_linear"] == 3);
  CHECK(calls["backward GeluLinearBackward"] == 3);
  CHECK(calls["forward cross_entropy"] == 3);
  CHECK(calls["optimizer AdamW.step"] == 3);
  CHECK(share > 0.0);
  CHECK(share <= 1.0 + 1e-9);  // the rows are parts of the steps
}
