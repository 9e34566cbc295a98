// safetensors files (docs/DESIGN.md section 6): the checkpoint format that PyTorch, NumPy and Hugging Face tools read.
//
//   bytes 0..7     N, the header length, unsigned 64-bit little-endian
//   bytes 8..8+N   the header: a JSON object, padded with trailing spaces (qkvlab pads to a multiple of 8)
//                    { "__metadata__": {"config": "{...}", ...},             optional, string -> string
//                      "tok_emb.weight": {"dtype": "F32", "shape": [65, 64], "data_offsets": [0, 16640]}, ... }
//   the rest       the data section: every tensor's raw little-endian bytes, row-major; data_offsets are
//                  [begin, end) relative to the start of the data section, and the tensors cover it exactly
//                  (no gaps, no overlaps).
//
// qkvlab reads and writes the dtypes it has: F32, F64 and I64.
//
// Writes are atomic: save_safetensors writes "<path>.tmp.<pid>", fsyncs it, renames it over <path> and fsyncs the
// directory, so a crash leaves either the old file or the new one, never half of one. (The crashed writer's
// "<path>.tmp.<pid>" stays beside them until the next successful save of <path> removes it.)
//
// Fault injection (for the crash-safety tests): when the environment variable QKVLAB_FAULT_INJECT is
// "kill-mid-write", save_safetensors writes the header and half of the data to the temporary file and then ends the
// process with std::_Exit(77), as a crash would; "kill-mid-write:N" does so on the N-th save of the process (the
// first N-1 complete normally). The file at <path> is untouched; "<path>.tmp.<pid>" stays behind.
// "enospc-after:BYTES" makes the writes fail with ENOSPC once the process has written BYTES bytes to its
// temporaries, as a full disk would (the temporary is removed, <path> untouched, the error names the device).

#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/array.h"

namespace qkvlab {

struct Safetensors {
  // In the order of their data in the file (for files qkvlab wrote: the order they were saved in).
  std::vector<std::pair<std::string, Array>> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::string source;                           // the file name (or what parse_safetensors was told), for errors

  // "safetensors: run/model.safetensors has no tensor 'blocks.0.attn.v.weight' (it has 14 tensors: ...)"
  const Array& get(const std::string& name) const;
  bool has(const std::string& name) const;
};

// Writes the tensors in the order given; a non-contiguous Array is written as its contiguous values.
// Names must be unique, non-empty and not "__metadata__". Errors name the path.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Array>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The bytes save_safetensors would write (header and data), without touching the disk.
std::vector<uint8_t> serialize_safetensors(const std::vector<std::pair<std::string, Array>>& tensors,
                                           const std::map<std::string, std::string>& metadata = {});

// Reads and validates a file; every malformed file gives an Error naming the file and what is wrong with it.
Safetensors load_safetensors(const std::string& path);

// Parses an in-memory file. Never reads outside [data, data + size), whatever the bytes are (it is fuzzed);
// `source` names the buffer in error messages.
Safetensors parse_safetensors(const uint8_t* data, size_t size, const std::string& source);

// Safetensors dtype names: DType::F32 <-> "F32", F64 <-> "F64", I64 <-> "I64".
const char* safetensors_dtype(DType t);

}  // namespace qkvlab
