// `qkvlab study` and `train` with the issue-16 records: --inits runs the study once per init into OUT/<init> and
// prints the verdicts side by side; results.json carries init, pe_init, recipe and, for (X)+ variants, the learned
// temperatures (pe_temperature per layer, pe_temperature_seeds per seed); a checkpoint's config holds them too.
#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include "tests/cli_child.h"

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"

using namespace qkvlab;
using Catch::Matchers::Contains;
using nlohmann::json;
using V = std::vector<std::string>;

namespace {
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("study_inits") {}
};
V operator+(V a, const V& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
const V kTiny{"--task", "reverse", "--seq-len", "8", "--train-size", "200", "--test-size", "50", "--d-model", "16",
              "--heads", "2", "--layers", "2", "--batch", "16", "--threads", "1", "--no-maps"};
json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f);
  return json::parse(f);
}
}  // namespace

TEST_CASE("study --inits: one study per init, records and temperatures in results.json", "[cli][init]") {
  TempDir tmp;
  const std::string out = tmp.file("inits");
  testing::CliResult r = testing::run_cli(
      V{"study", "--variants", "single,single+", "--seeds", "2", "--steps", "4", "--inits", "torch,gpt2", "--out",
        out} + kTiny,
      tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("init torch, (X)+ pe-init normal; recipe: Adam lr 0.001, batch 16, 4 steps"));
  CHECK_THAT(r.out, Contains("init gpt2, (X)+ pe-init normal"));
  CHECK_THAT(r.out, Contains("Init study: task reverse"));
  CHECK_THAT(r.out, Contains("| torch accuracy"));
  CHECK_THAT(r.out, Contains("sum w"));
  for (const std::string init : {"torch", "gpt2"}) {
    json j = read_json(out + "/" + init + "/results.json");
    CHECK(j["init"] == init);
    CHECK(j["pe_init"] == "normal");
    CHECK(j["recipe"]["steps"] == 4);
    CHECK(j["recipe"]["clip"] == 5.0);
    CHECK(j["recipe"]["optimizer"] == "Adam");
    REQUIRE(j["variants"].size() == 2);
    CHECK_FALSE(j["variants"][0].contains("pe_temperature"));  // Q=K=V has no bias
    const json& plus = j["variants"][1];
    REQUIRE(plus["pe_temperature"].size() == 2);  // one per layer
    REQUIRE(plus["pe_temperature_seeds"].size() == 2);  // one list per seed
    for (int l = 0; l < 2; ++l) {
      double a = plus["pe_temperature_seeds"][0][l].get<double>(), b = plus["pe_temperature_seeds"][1][l].get<double>();
      CHECK(plus["pe_temperature"][l].get<double>() == Approx((a + b) / 2));
      CHECK(std::abs(a) < 0.5);  // 4 small steps from N(0, 0.02) x 10: still near 0
    }
    // The checkpoint's config records the same.
    ModelConfig c = read_config(out + "/" + init + "/single+/seed1");
    CHECK(c.init == init);
    CHECK(c.pe_init == "normal");
    CHECK(json::parse(c.recipe)["batch"] == 16);
  }
}

TEST_CASE("train --pe-init negative starts every layer at sum w = -1; attention prints sum w", "[cli][init]") {
  TempDir tmp;
  const std::string out = tmp.file("neg");
  testing::CliResult r = testing::run_cli(
      V{"train", "--variant", "single+", "--pe-init", "negative", "--steps", "1", "--lr", "1e-9", "--out", out} +
          V{"--task", "reverse", "--seq-len", "8", "--train-size", "200", "--test-size", "50", "--d-model", "16",
            "--heads", "2", "--layers", "2", "--batch", "16", "--threads", "1", "--json"},
      tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  json j = json::parse(r.out);
  CHECK(j["init"] == "torch");
  CHECK(j["pe_init"] == "negative");
  REQUIRE(j["pe_temperature"].size() == 2);
  for (const json& t : j["pe_temperature"]) CHECK(t.get<double>() == Approx(-1.0).margin(1e-4));
  testing::CliResult a = testing::run_cli(V{"attention", "--ckpt", out, "--out", tmp.file("maps")}, tmp.path);
  INFO(a.err);
  REQUIRE(a.status == 0);
  CHECK_THAT(a.out, Contains("sum w"));
  CHECK_THAT(a.out, Contains("-1.000"));
}
