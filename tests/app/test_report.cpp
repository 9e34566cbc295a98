// report.html (app/report.h): the page a study leaves in its folder, and `qkvlab report --dir`.
//   - a miniature study writes it: self-contained (nothing loaded over the network), every variant in its inline
//     data with the loss curve of every seed and the attention maps of every seed, which match maps.json;
//   - without Chart.js the page falls back to tables and says so; the fidelity keys (init, pe_init, recipe,
//     pe_temperature) are carried when present;
//   - a missing or damaged results.json is one line on stderr and exit 2; at the end of a study, one line and the
//     study still succeeds.
// The page's behaviour in a browser is checked by tests/report/browser_test.py (headless chromium).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "app/report.h"
#include "tensor/error.h"
#include "tests/cli_child.h"
#include "tests/test_util.h"

using namespace qkvlab;
using Catch::Matchers::Contains;
using nlohmann::json;
using V = std::vector<std::string>;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("report") {}
};

const V kTiny{"--task", "reverse", "--seq-len", "8", "--train-size", "200", "--test-size", "50", "--d-model", "16",
              "--heads", "2", "--layers", "1", "--batch", "16", "--threads", "1"};

V operator+(V a, const V& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The JSON the page carries in <script type="application/json" id="report-data">.
json page_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  size_t a = html.find(open);
  REQUIRE(a != std::string::npos);
  a += open.size();
  size_t b = html.find("</script>", a);
  REQUIRE(b != std::string::npos);
  return json::parse(html.substr(a, b - a));  // throws (fails the test) when it does not parse
}

std::vector<uint8_t> unbase64(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::vector<uint8_t> out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(uint8_t((acc >> bits) & 255));
    }
  }
  return out;
}

// Anything the page would fetch: a src or href naming http(s) or a protocol-relative //host.
bool loads_from_network(const std::string& html) {
  static const std::regex remote(R"((src|href)\s*=\s*["']?\s*(https?:)?//)", std::regex::icase);
  return std::regex_search(html, remote);
}

}  // namespace

TEST_CASE("report: a miniature study writes a self-contained report.html with every variant, seed and map",
          "[report][cli]") {
  TempDir tmp;
  const std::string out = tmp.file("study");  // fresh: study may refuse an existing --out
  testing::CliResult r =
      testing::run_cli(V{"study", "--variants", "qkv,single", "--seeds", "2", "--steps", "4", "--out", out} + kTiny,
                       tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("report.html"));
  const std::string html = testing::slurp_file(out + "/report.html");
  REQUIRE(!html.empty());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(!loads_from_network(html));
  CHECK(html.find("@@") == std::string::npos);  // every template marker filled
  const bool have_chartjs = std::filesystem::exists(app::kDefaultChartJs);
  // Chart.js inline when Debian's package is installed (its banner names the version); no <script src> either way.
  CHECK((html.find("Chart.js v") != std::string::npos) == have_chartjs);
  CHECK(html.find("<script src") == std::string::npos);

  json data = page_data(html);
  CHECK(data["charts"].get<bool>() == have_chartjs);
  CHECK(data["meta"]["task"] == "reverse");
  CHECK(data["meta"]["seeds"] == 2);
  CHECK(data["paper"]["kind"] == "accuracy");
  REQUIRE(data["variants"].size() == 2);
  json results = json::parse(testing::slurp_file(out + "/results.json"));
  for (size_t i = 0; i < 2; ++i) {
    const json& v = data["variants"][i];
    const std::string id = v["variant"];
    INFO(id);
    CHECK(id == results["variants"][i]["variant"]);
    CHECK(v["parameters"] == results["variants"][i]["parameters"]);
    CHECK(v["metric"] == results["variants"][i]["metric"]);
    // The paper's Table 1 REVERSE figures, as docs/RESULTS.md quotes them.
    CHECK(v["paper"].get<double>() == (id == "qkv" ? 0.698 : 0.514));
    REQUIRE(v["runs"].size() == 2);
    for (size_t s = 0; s < 2; ++s) {
      const json& run = v["runs"][s];
      CHECK(run["name"] == "seed" + std::to_string(s));
      // The curve is metrics.jsonl's training-loss lines: positive, ending at the last step.
      REQUIRE(!run["curve"].empty());
      CHECK(run["curve"].back()[0] == 4);
      for (const json& p : run["curve"]) CHECK(p[1].get<double>() > 0);
      // One map per layer and head, size x size bytes, each row scaled to its own maximum (so has a byte 255).
      REQUIRE(run["inputs"].size() == 1);
      const json& maps = run["inputs"][0]["maps"];
      REQUIRE(maps.size() == 2);  // 1 layer x 2 heads
      CHECK(run["inputs"][0]["labels"].size() == 8);
      // The same values as maps.json beside the PNGs, which hold probabilities: every row sums to 1.
      json raw = json::parse(testing::slurp_file(out + "/" + id + "/seed" + std::to_string(s) + "/attention/maps.json"));
      CHECK(raw["seed"] == s);
      for (size_t k = 0; k < maps.size(); ++k) {
        const json& m = maps[k];
        CHECK(m["size"] == 8);
        std::vector<uint8_t> q = unbase64(m["q"].get<std::string>());
        REQUIRE(q.size() == 64);
        REQUIRE(m["rows"].size() == 8);
        for (int row = 0; row < 8; ++row) CHECK(*std::max_element(q.begin() + row * 8, q.begin() + row * 8 + 8) == 255);
        const json& probs = raw["inputs"][0]["maps"][k]["probs"];
        REQUIRE(probs.size() == 64);
        double vmax = 0;
        for (int row = 0; row < 8; ++row) {
          double sum = 0;
          for (int col = 0; col < 8; ++col) sum += probs[size_t(row * 8 + col)].get<double>();
          CHECK(sum == Approx(1.0).margin(1e-3));
        }
        for (const json& p : probs) vmax = std::max(vmax, p.get<double>());
        CHECK(m["vmax"].get<double>() == Approx(vmax));
        // Each byte, times its row's maximum, is the probability to within half a step (and the maximum's 6 digits).
        for (size_t e = 0; e < 64; ++e) {
          const double rmax = m["rows"][e / 8].get<double>();
          CHECK(std::abs(q[e] / 255.0 * rmax - probs[e].get<double>()) <= rmax * (0.5 / 255.0 + 1e-5));
        }
        // Q=K=V's scores are symmetric in every seed (the PNGs show only the first), QKV's are not.
        if (id == "single") CHECK(m["asymmetry"].get<double>() == 0.0);
        else CHECK(m["asymmetry"].get<double>() > 0.0);
      }
    }
  }
}

TEST_CASE("report: qkvlab report --dir rewrites the page; without Chart.js it falls back to tables", "[report][cli]") {
  TempDir tmp;
  const std::string out = tmp.file("study");
  testing::CliResult r =
      testing::run_cli(V{"study", "--variants", "kv", "--steps", "3", "--no-maps", "--out", out} + kTiny, tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::filesystem::remove(out + "/report.html");
  r = testing::run_cli(V{"report", "--dir", out, "--chart-js", tmp.file("absent.js")}, tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("wrote " + out + "/report.html"));
  CHECK_THAT(r.out, Contains("Chart.js not found"));
  const std::string html = testing::slurp_file(out + "/report.html");
  CHECK(html.find("Chart.js v") == std::string::npos);
  json data = page_data(html);
  CHECK(data["charts"] == false);
  REQUIRE(data["variants"].size() == 1);
  CHECK(data["variants"][0]["variant"] == "kv");
  // One seed: the run folder is the variant's own; --no-maps: a curve but no maps.
  REQUIRE(data["variants"][0]["runs"].size() == 1);
  CHECK(!data["variants"][0]["runs"][0]["curve"].empty());
  CHECK(data["variants"][0]["runs"][0]["inputs"].empty());
  CHECK(!std::filesystem::exists(out + "/report.html.tmp"));

  // --json: what was written, machine-readable.
  r = testing::run_cli(V{"report", "--dir", out, "--json"}, tmp.path);
  REQUIRE(r.status == 0);
  json j = json::parse(r.out);
  CHECK(j["variants"] == 1);
  CHECK(j["maps"] == 0);
  CHECK(j["bytes"].get<int64_t>() == int64_t(std::filesystem::file_size(out + "/report.html")));
}

TEST_CASE("report: carries the fidelity keys (init, pe_init, recipe, learned temperatures) when results.json has them",
          "[report]") {
  TempDir tmp;
  json results = {{"task", "lm"},
                   {"metric", "val perplexity"},
                   {"seeds", 2},
                   {"heads", 8},
                   {"init", "gpt2"},
                   {"pe_init", "normal"},
                   {"recipe", {{"optimizer", "adamw"}, {"lr", 0.003}}},
                   {"variants",
                    {{{"variant", "qkv"}, {"paper_name", "QKV"}, {"metric_mean", 6.7}},
                     {{"variant", "gqa:2"}, {"paper_name", "GQA-2"}, {"metric_mean", 6.8}},
                     {{"variant", "single+"},
                      {"paper_name", "(Q=K=V)+"},
                      {"metric_mean", 9.0},
                      {"pe_temperature", {-0.8, 0.4}},
                      {"pe_temperature_seeds", {{-0.9, 0.3}, {-0.7, 0.5}}}}}}};
  testing::write_file(tmp.file("results.json"), results.dump());
  // No run folders at all: the page still has the table, with no curves or maps.
  app::ReportInfo info = app::write_report(tmp.path, tmp.file("absent.js"));
  CHECK(info.variants == 3);
  CHECK(info.maps == 0);
  CHECK(!info.charts);
  json data = page_data(testing::slurp_file(info.path));
  CHECK(data["meta"]["init"] == "gpt2");
  CHECK(data["meta"]["pe_init"] == "normal");
  CHECK(data["meta"]["recipe"]["lr"] == 0.003);
  CHECK(data["variants"][2]["pe_temperature"] == json({-0.8, 0.4}));
  CHECK(data["variants"][2]["pe_temperature_seeds"].size() == 2);
  // Table 13's change against QKV; GQA with H/4 = 2 KV heads of 8 is the paper's GQA-4.
  CHECK(data["paper"]["kind"] == "change");
  CHECK(data["variants"][1]["paper"].get<double>() == 0.7);
  CHECK(data["variants"][2]["paper"].is_null());  // the paper has no (Q=K=V)+ language model
}

TEST_CASE("report: a missing or damaged results.json is one line on stderr and exit 2", "[report][cli]") {
  TempDir tmp;
  auto expect_error = [&](const V& args, const std::string& needle) {
    testing::CliResult r = testing::run_cli(args, tmp.path);
    INFO(args.back() << ": " << r.err);
    CHECK(r.status == 2);
    CHECK(r.err_lines() == 1);
    CHECK_THAT(r.err, Contains("qkvlab: error:"));
    CHECK_THAT(r.err, Contains(needle));
    CHECK(r.out.empty());
  };
  expect_error(V{"report"}, "--dir");
  expect_error(V{"report", "--dir", tmp.file("nowhere")}, "no results.json in " + tmp.file("nowhere"));
  const std::string dir = tmp.sub("run");
  expect_error(V{"report", "--dir", dir}, "no results.json in " + dir);
  testing::write_file(dir + "/results.json", "{\"task\": \"reverse\", \"variants\": [");
  expect_error(V{"report", "--dir", dir}, "is not valid JSON");
  testing::write_file(dir + "/results.json", "{\"task\": \"reverse\"}");
  expect_error(V{"report", "--dir", dir}, "has no \"variants\" list");
  testing::write_file(dir + "/results.json", "{\"variants\": [{\"metric_mean\": 1}]}");
  expect_error(V{"report", "--dir", dir}, "without \"variant\"");
  CHECK(!std::filesystem::exists(dir + "/report.html"));
  // A damaged maps.json or metrics.jsonl line is skipped, not fatal: the page is written without that map.
  testing::write_file(dir + "/results.json",
                      R"({"task": "reverse", "variants": [{"variant": "qkv", "paper_name": "QKV"}]})");
  std::filesystem::create_directories(dir + "/qkv/attention");
  testing::write_file(dir + "/qkv/attention/maps.json", "{\"inputs\": [{\"maps\": [{\"size\": 3, \"probs\": [1]}]}]}");
  testing::write_file(dir + "/qkv/metrics.jsonl", "{\"step\": 1, \"loss\": 2.5}\nnot json\n{\"step\": 2, \"loss\": 2.0}\n");
  app::ReportInfo info = app::write_report(dir);
  json data = page_data(testing::slurp_file(info.path));
  CHECK(data["variants"][0]["runs"][0]["inputs"].empty());
  CHECK(data["variants"][0]["runs"][0]["curve"] == json({{1, 2.5}, {2, 2.0}}));
}

TEST_CASE("report: when the page cannot be written at the end of a study, one line says so", "[report]") {
  TempDir tmp;
  // stderr into a file for the call (the study's own caller prints nothing else there).
  const std::string err_path = tmp.file("stderr");
  std::fflush(stderr);
  int saved = ::dup(2);
  int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  ::dup2(fd, 2);
  bool ok = app::write_report_after_study(tmp.file("no-such-study"));
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  CHECK(!ok);
  const std::string err = testing::slurp_file(err_path);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK_THAT(err, Contains("study: report.html not written: report: no results.json"));
}
