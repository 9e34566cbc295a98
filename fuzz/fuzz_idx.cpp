// libFuzzer harness: the IDX reader (Fashion-MNIST, models/data.cpp) on arbitrary bytes, gzipped or not.
// The bytes go through read_gz_file (zlib, as for the real files) and parse_idx; a file parse_idx accepts is then
// offered to make_image_set both as images and as labels. Every outcome must be a value or a qkvlab::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/data.h"

using namespace qkvlab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/qkvlab_fuzz_idx_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  std::vector<uint8_t> bytes;
  try {
    bytes = read_gz_file(path);
  } catch (const Error&) {
    return 0;  // corrupt gzip data
  }
  IdxFile idx;
  try {
    idx = parse_idx(bytes.data(), bytes.size(), path);
  } catch (const Error&) {
    return 0;
  }
  uint64_t numel = 1;
  for (int64_t d : idx.dims) numel *= uint64_t(d);
  if (idx.data.size() != numel) std::abort();  // parse_idx promised exactly prod(dims) bytes
  try {
    ImageSet s = make_image_set(idx, idx, "images", "labels");
    (void)s;
  } catch (const Error&) {
  }
  return 0;
}
