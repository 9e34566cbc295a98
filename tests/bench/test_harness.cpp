// The bench library itself (bench/harness.h, bench/matmul.h, tensor/format.h), without the command line: the
// statistics the tables print, the child-process runner the yardsticks go through, and one small matmul
// measurement. tests/app/test_bench.cpp checks `qkvlab bench` end to end. No timing assertions.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/harness.h"
#include "bench/matmul.h"
#include "tensor/error.h"
#include "tensor/format.h"
#include "tensor/platform.h"

using namespace qkvlab;

namespace {
bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}
}  // namespace

TEST_CASE("bench harness: median and range of odd and even counts, none gives n = 0", "[bench]") {
  const bench::Stats odd = bench::stats({5, 1, 3});
  CHECK(odd.median == 3);
  CHECK(odd.lo == 1);
  CHECK(odd.hi == 5);
  CHECK(odd.n == 3);
  const bench::Stats even = bench::stats({4, 1, 2, 10});
  CHECK(even.median == 3);  // (2 + 4) / 2
  CHECK(even.n == 4);
  CHECK(bench::stats({}).n == 0);
}

TEST_CASE("bench harness: lists, thread counts, number formatting", "[bench]") {
  CHECK(bench::split("qkv,,kv,", ',') == std::vector<std::string>{"qkv", "kv"});
  CHECK(bench::thread_counts(3) == std::vector<int>{3});
  CHECK(bench::thread_counts(0).front() == 1);
  CHECK(with_commas(1234567) == "1,234,567");
  CHECK(with_commas(-1234) == "-1,234");
  CHECK(with_commas(999) == "999");
  CHECK(with_commas(-100) == "-100");
  CHECK(with_commas(0) == "0");
  CHECK(with_commas(INT64_MIN) == "-9,223,372,036,854,775,808");
  CHECK(fixed(2.345, 1) == "2.3");
}

TEST_CASE("bench harness: a child's stdout comes back, quoting survives the shell, failure is one line", "[bench]") {
  const std::string odd = "it's $HOME `x`";
  CHECK(bench::run_child("printf %s " + bench::shell_quote(odd), "printf") == odd);
  CHECK_THROWS_WITH(bench::run_child("(echo first >&2; echo last words >&2; exit 3)", "the test child"),
                    Catch::Contains("the test child failed (exit status 3): last words"));
  std::string path;
  {
    bench::TempFile f;
    path = f.path;
    REQUIRE(exists(path));
    bench::run_child("printf hello > " + bench::shell_quote(f.path), "write");
    CHECK(f.read() == "hello");
  }
  CHECK_FALSE(exists(path));
  CHECK(qkvlab::peak_rss_megabytes() > 0);
}

TEST_CASE("bench matmul library: shapes by name or size, correct products, one figure per repeat", "[bench]") {
  const std::vector<bench::MatShape> shapes = bench::pick_shapes("t_qkv_fwd,7x5x3x2");
  REQUIRE(shapes.size() == 2);
  CHECK(shapes[0].tb);
  CHECK(shapes[1].batch == 2);
  CHECK(shapes[1].what == "custom");
  CHECK(bench::pick_shapes("all").size() == bench::matmul_shapes().size());
  CHECK_THROWS_WITH(bench::pick_shapes("sq3x"), Catch::Contains("unknown shape 'sq3x'"));

  const bench::MatmulResult r = bench::measure_matmul({shapes, {1}, "", 2, 1, 0.1});
  for (const auto& s : shapes) {
    const std::vector<double>& g = r.ours.at({s.name, 1});
    REQUIRE(g.size() == 2);
    CHECK(g[0] > 0);
    CHECK(r.max_rel_err.at(s.name) < 1e-5);
  }
  CHECK(r.openblas.empty());
}
