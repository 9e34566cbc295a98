// libFuzzer harness: the safetensors reader (models/safetensors.cpp) on arbitrary bytes.
// Whatever the bytes, parse_safetensors either returns or throws qkvlab::Error; ASan/UBSan catch the rest.
// A file it accepts must survive a round trip: serialize what was read and parse it again to the same tensors.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "models/safetensors.h"

using namespace qkvlab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Safetensors st;
  try {
    st = parse_safetensors(data, size, "fuzz");
  } catch (const Error&) {
    return 0;  // a clear refusal is the right answer to bad bytes
  }
  std::vector<uint8_t> again = serialize_safetensors(st.tensors, st.metadata);
  Safetensors st2 = parse_safetensors(again.data(), again.size(), "round trip");
  if (st2.tensors.size() != st.tensors.size() || st2.metadata != st.metadata) std::abort();
  for (size_t i = 0; i < st.tensors.size(); ++i) {
    const Array &a = st.tensors[i].second, &b = st2.tensors[i].second;
    if (st.tensors[i].first != st2.tensors[i].first || a.shape() != b.shape() || a.dtype() != b.dtype()) std::abort();
    const size_t bytes = size_t(a.numel()) * dtype_size(a.dtype());
    if (bytes && std::memcmp(a.storage()->data(), b.storage()->data(), bytes) != 0) std::abort();
  }
  return 0;
}
