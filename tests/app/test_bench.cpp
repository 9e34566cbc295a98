// qkvlab bench through the real program (build/<mode>/qkvlab beside this test binary): every section on tiny
// work, its --json parses and holds what the section promises; the yardstick columns are checked with stand-in
// yardstick programs whose figures are known, so the ratios can be checked without OpenBLAS or PyTorch.
// No timing assertions: figures are only required to be positive.
#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include "tensor/platform.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs `qkvlab args` (args already shell-quoted where needed) with one kernel thread by default.
Run run_qkvlab(const std::string& args, const qkvlab::testing::TempDir& tmp) {
  const std::string bin = (std::filesystem::path(qkvlab::executable_path()).parent_path() / "qkvlab").string();
  REQUIRE(::access(bin.c_str(), X_OK) == 0);
  const std::string err = tmp.file("stderr.txt");
  FILE* p = ::popen(("QKVLAB_THREADS=1 '" + bin + "' " + args + " 2>'" + err + "'").c_str(), "r");
  REQUIRE(p != nullptr);
  Run r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = slurp(err);
  return r;
}

json parse(const Run& r) {
  INFO("stderr: " << r.err << "\nstdout: " << r.out);
  REQUIRE(r.status == 0);
  json j;
  REQUIRE_NOTHROW(j = json::parse(r.out));
  return j;
}

// An executable shell script standing in for a yardstick.
std::string script(const qkvlab::testing::TempDir& tmp, const std::string& name, const std::string& body) {
  const std::string path = tmp.file(name);
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
  return path;
}

void expect_error(const std::string& args, const std::string& what) {
  qkvlab::testing::TempDir tmp("bench");
  const Run r = run_qkvlab(args, tmp);
  INFO("qkvlab " << args << "\nstderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err.rfind("qkvlab: error:", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find(what) != std::string::npos);
}

}  // namespace

TEST_CASE("bench matmul: odd, batched and transposed shapes, correct results, JSON rows", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  const json j = parse(run_qkvlab("bench matmul --shapes 7x5x9,4x3x6x3,s_attn_qk --quick --threads 1 --json", tmp));
  REQUIRE(j["section"] == "matmul");
  REQUIRE(j["rows"].size() == 3);
  const json& odd = j["rows"][0];
  CHECK(odd["shape"] == "7x5x9");
  CHECK(odd["M"] == 7);
  CHECK(odd["K"] == 5);
  CHECK(odd["N"] == 9);
  CHECK(j["rows"][1]["batch"] == 3);
  CHECK(j["rows"][2]["op"] == "NT");
  CHECK(j["rows"][2]["batch"] == 128);
  for (const json& row : j["rows"]) {
    CHECK(row["threads"] == 1);
    CHECK(row["ok"] == true);
    CHECK(row["max_rel_err"].get<double>() < 1e-5);
    CHECK(row["gflops"]["median"].get<double>() > 0);
    CHECK(row["openblas_gflops"].is_null());  // no yardstick given
    CHECK(row["ratio"].is_null());
  }
}

TEST_CASE("bench matmul: the OpenBLAS column and the ratio come from the yardstick's output", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  // The line format of bench/sgemm_openblas.c: shape impl M K N batch op best_GF/s med_GF/s reps max_relerr; it
  // must see its threads.
  const std::string fake = script(tmp, "sgemm_ref",
                                  "echo \"# openblas: threads=$OPENBLAS_NUM_THREADS\"\n"
                                  "echo 'sq256 openblas 256 256 256 1 NN 50.00 40.00 10 -'\n"
                                  "echo 'other openblas 1 1 1 1 NN 1.00 1.00 1 -'\n");
  const json j = parse(run_qkvlab("bench matmul --shapes sq256,3x4x5 --quick --threads 1 --json --openblas '" + fake + "'",
                              tmp));
  REQUIRE(j["rows"].size() == 2);
  const json& sq = j["rows"][0];
  CHECK(sq["openblas_gflops"]["median"].get<double>() == Approx(50.0));
  CHECK(sq["ratio"].get<double>() == Approx(sq["gflops"]["median"].get<double>() / 50.0));
  CHECK(j["rows"][1]["openblas_gflops"].is_null());  // a custom size has no yardstick
  // The markdown table names the ratio column.
  const Run table = run_qkvlab("bench matmul --shapes sq256 --quick --threads 1 --openblas '" + fake + "'", tmp);
  REQUIRE(table.status == 0);
  CHECK(table.out.find("| ratio") != std::string::npos);
  CHECK(table.out.find("| 50.0 ") != std::string::npos);
}

TEST_CASE("bench decode: cache bytes per token match the formula, same tokens with and without", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  const json j = parse(run_qkvlab("bench decode --preset tiny --context 12 --variants qkv,kv,mqa --quick --json", tmp));
  REQUIRE(j["rows"].size() == 3);
  // tiny: 2 layers, 4 heads of 16; float32. qkv caches K and V, kv caches K only, mqa K and V of one head.
  const int64_t expected[3] = {2 * 2 * 4 * 16 * 4, 2 * 1 * 4 * 16 * 4, 2 * 2 * 1 * 16 * 4};
  for (int i = 0; i < 3; ++i) {
    const json& row = j["rows"][size_t(i)];
    INFO(row.dump());
    CHECK(row["cache_bytes_per_token"] == expected[i]);
    CHECK(row["formula_bytes_per_token"] == expected[i]);
    CHECK(row["matches_formula"] == true);
    CHECK(row["tokens_per_s_cache"]["median"].get<double>() > 0);
    CHECK(row["tokens_per_s_no_cache"]["median"].get<double>() > 0);
  }
  CHECK(j["rows"][1]["paper_name"] == "Q-K=V");
}

TEST_CASE("bench train: each row in its own process, the PyTorch column from the yardstick's JSON", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  // bench/torch_gpt.py writes its measurement to the --json file: 64 tokens in 0.5 s = 128 tokens/s.
  const std::string fake = script(tmp, "torch",
                                  "while [ $# -gt 0 ]; do [ \"$1\" = --json ] && out=$2; shift; done\n"
                                  "echo '{\"train_s\": [0.5, 0.4, 0.6], \"tokens\": 64, \"peak_rss_kb\": 2048, "
                                  "\"n_params\": 10}' >> \"$out\"\n");
  const json j = parse(run_qkvlab("bench train --presets tiny --variants kv,single --threads 1 --repeats 1 --steps 2 "
                              "--warmup 1 --batch 2 --json --torch '" + fake + "'",
                              tmp));
  REQUIRE(j["rows"].size() == 2);
  for (const json& row : j["rows"]) {
    INFO(row.dump());
    const double ours = row["tokens_per_s"]["median"];
    CHECK(ours > 0);
    CHECK(row["peak_rss_mb"]["median"].get<double>() > 1);
    CHECK(row["torch_tokens_per_s"]["median"].get<double>() == Approx(128.0));
    CHECK(row["torch_peak_rss_mb"]["median"].get<double>() == Approx(2.0));
    CHECK(row["ratio"].get<double>() == Approx(ours / 128.0));
  }
  // Q-K=V has one d x d projection per layer more than Q=K=V (tiny: d 64, 2 layers, with bias).
  CHECK(j["rows"][0]["params"].get<int64_t>() - j["rows"][1]["params"].get<int64_t>() == 2 * (64 * 64 + 64));
}

// The repository's own yardsticks (bench/, used by bench/run.sh) speak the protocol the stand-ins above mimic.
// Each is skipped with a note when its library is not installed (bash tools/deps.sh --bench).
static std::string repo_root() {
  // build/<mode>/qkvlab_tests -> the repository
  return std::filesystem::path(qkvlab::executable_path()).parent_path().parent_path().parent_path().string();
}

// bench/sgemm_openblas.c built into tmp, as bench/run.sh builds it; "" (with a note) when OpenBLAS is missing.
static std::string build_sgemm_openblas(qkvlab::testing::TempDir& tmp) {
  const std::string exe = tmp.file("sgemm_openblas");
  const std::string cc = "cc -O2 '" + repo_root() + "/bench/sgemm_openblas.c' -o '" + exe + "' -lopenblas -lm 2>/dev/null";
  if (std::system(cc.c_str()) != 0) {
    WARN("skipped: bench/sgemm_openblas.c does not build here (libopenblas-dev: bash tools/deps.sh --bench)");
    return "";
  }
  return exe;
}

TEST_CASE("bench/sgemm_openblas.c: built with OpenBLAS, its rows fill bench matmul's OpenBLAS column", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  const std::string exe = build_sgemm_openblas(tmp);
  if (exe.empty()) return;
  const json j = parse(run_qkvlab("bench matmul --shapes sq256,s_attn_qk --quick --threads 1 --json --openblas '" + exe +
                                      "'",
                                  tmp));
  REQUIRE(j["rows"].size() == 2);
  for (const json& row : j["rows"]) {
    INFO(row.dump());
    CHECK(row["openblas_gflops"]["median"].get<double>() > 0);
    CHECK(row["ratio"].get<double>() > 0);
  }
}

// bench/run.sh asks the library which kernels it picks (--corename) to catch a CPU taken for an older core.
TEST_CASE("bench/sgemm_openblas.c --corename: the core OpenBLAS uses, and OPENBLAS_CORETYPE changes it", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  const std::string exe = build_sgemm_openblas(tmp);
  if (exe.empty()) return;
  auto core = [&](const std::string& env) {
    const std::string out = tmp.file("core.txt");
    REQUIRE(std::system((env + " '" + exe + "' --corename > '" + out + "'").c_str()) == 0);
    std::string line = slurp(out);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    return line;
  };
  CHECK_FALSE(core("env -u OPENBLAS_CORETYPE").empty());
#if defined(__x86_64__)  // x86 core names; Debian builds OpenBLAS with every x86 core in it (DYNAMIC_ARCH)
  CHECK(core("env OPENBLAS_CORETYPE=Haswell") == "Haswell");
  CHECK(core("env OPENBLAS_CORETYPE=Prescott") == "Prescott");
#endif
}

TEST_CASE("bench/torch_gpt.py: the same GPT in PyTorch, its JSON fills bench train's PyTorch column", "[app][bench]") {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    WARN("skipped: /usr/bin/python3 cannot import torch (python3-torch: bash tools/deps.sh --bench)");
    return;
  }
  qkvlab::testing::TempDir tmp("bench");
  const json j = parse(run_qkvlab("bench train --presets tiny --variants kv,single --threads 1 --repeats 1 --steps 1 "
                                  "--warmup 0 --json --torch '/usr/bin/python3 " + repo_root() + "/bench/torch_gpt.py'",
                                  tmp));
  REQUIRE(j["rows"].size() == 2);
  for (const json& row : j["rows"]) {
    INFO(row.dump());
    CHECK(row["torch_tokens_per_s"]["median"].get<double>() > 0);
    CHECK(row["torch_peak_rss_mb"]["median"].get<double>() > 10);
    CHECK(row["ratio"].get<double>() > 0);
  }
}

TEST_CASE("bench scaling: a row per point and variant, and the two charts", "[app][bench]") {
  qkvlab::testing::TempDir tmp("bench");
  const json j = parse(run_qkvlab("bench scaling --contexts 8,16 --widths 16,32 --batch 2 --steps 1 --json --out '" +
                                  tmp.file("charts") + "'",
                              tmp));
  REQUIRE(j["rows"].size() == 4);
  CHECK(j["rows"][1]["sweep"] == "context");
  CHECK(j["rows"][1]["context"] == 16);
  CHECK(j["rows"][3]["sweep"] == "width");
  CHECK(j["rows"][3]["d_model"] == 32);
  for (const json& row : j["rows"]) {
    CHECK(row["step_ms"]["qkv"].get<double>() > 0);
    CHECK(row["step_ms"]["kv"].get<double>() > 0);
    CHECK(row["params"]["qkv"].get<int64_t>() > row["params"]["kv"].get<int64_t>());
  }
  for (const char* name : {"scaling_context.png", "scaling_width.png"}) {
    const std::string png = slurp(tmp.file(std::string("charts/") + name));
    REQUIRE(png.size() > 8);
    CHECK(png.substr(1, 3) == "PNG");
  }
}

TEST_CASE("bench: bad input is one line on stderr and exit status 2", "[app][bench]") {
  expect_error("bench", "");
  expect_error("bench matmul --shapes 0x3x3", "unknown shape '0x3x3'");
  expect_error("bench matmul --shapes sq256 --repeats 0", "--repeats");
  expect_error("bench decode --variants nope", "unknown variant 'nope'");
  expect_error("bench decode --context 1", "--context");
  expect_error("bench train --presets huge", "unknown preset 'huge'");
  expect_error("bench scaling --contexts 64,x", "--contexts");
  expect_error("bench matmul --shapes sq256 --quick --threads 1 --openblas /nonexistent/sgemm_ref",
               "the OpenBLAS yardstick");
}
