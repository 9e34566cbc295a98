// Bugs found while writing the fuzz harnesses (fuzz/: their round-trip checks) and by their runs, each kept as a
// regression test. The bytes are written out here rather than stored as files, so that each case says what is
// wrong with it.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "models/safetensors.h"
#include "nn/attention/registry.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {
// A safetensors file: the 8-byte little-endian header length, the header, the data.
std::vector<uint8_t> file(const std::string& header, const std::string& data = "") {
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(header.size()) >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
}  // namespace

TEST_CASE("fuzz regression: a tensor with an empty name is refused by the reader, as by the writer",
          "[reliability][fuzz]") {
  // The round trip of fuzz_safetensors: the reader accepted "" as a name, then serializing it back threw.
  const auto bytes = file(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  REQUIRE_THROWS_WITH(parse_safetensors(bytes.data(), bytes.size(), "empty-name"), Contains("empty name"));
}

TEST_CASE("fuzz regression: variant names with bytes above 0x7f are refused, not undefined behaviour",
          "[reliability][fuzz]") {
  // std::isspace / std::isdigit were called with negative char values.
  for (const std::string& name : {std::string("\xa0qkv"), std::string("gqa:\xb2"), std::string("kv-gqa:\xd9\xa3")})
    REQUIRE_THROWS_WITH(parse_variant(name), Contains("unknown variant"));
  CHECK(parse_variant(" qkv\t").id() == "qkv");
  CHECK(parse_variant("gqa:000004").id() == "gqa:4");
}
