// libFuzzer harness: the variant-name parser (nn/attention/registry.cpp) on arbitrary strings.
// parse_variant and variant_set either return or throw qkvlab::Error. A name that parses must round-trip: its
// canonical id and its paper name parse back to the same spec.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nn/attention/registry.h"

using namespace qkvlab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  try {
    VariantSpec v = parse_variant(s);
    if (!(parse_variant(v.id()) == v) || !(parse_variant(v.paper_name()) == v)) std::abort();
    if (v.kv_heads < 0 || v.cached_tensors() < 1 || v.cached_tensors() > 2) std::abort();
  } catch (const Error&) {
  }
  try {
    for (const VariantSpec& v : variant_set(s, 8))
      if (!(parse_variant(v.id()) == v)) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
