// libFuzzer harness: the LM data path (models/data.cpp) on an arbitrary corpus.
// The first byte picks the context (1..32) and batch size; the rest is the corpus, read back from a file with
// read_file as `qkvlab train --task lm --data` does. Then: tokenizer, 90/10 split, random training windows,
// evaluation windows. Checked: decode(encode(corpus)) == corpus, every window holds ids of the vocabulary and
// its targets are its inputs shifted by one.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/data.h"

using namespace qkvlab;

namespace {
void check_batch(const Batch& b, int64_t vocab) {
  const int64_t B = b.x.size(0), T = b.x.size(1);
  const int64_t *x = b.x.data<int64_t>(), *y = b.y.data<int64_t>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t t = 0; t < T; ++t) {
      if (x[i * T + t] < 0 || x[i * T + t] >= vocab || y[i * T + t] < 0 || y[i * T + t] >= vocab) std::abort();
      if (t + 1 < T && y[i * T + t] != x[i * T + t + 1]) std::abort();
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t context = 1 + data[0] % 32, batch = 1 + data[0] / 32;
  static const std::string path = "/tmp/qkvlab_fuzz_corpus_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);
  const std::string corpus = read_file(path);
  if (corpus != std::string(reinterpret_cast<const char*>(data + 1), size - 1)) std::abort();
  try {
    ByteTokenizer tok = ByteTokenizer::from_corpus(corpus);
    if (tok.decode(tok.encode(corpus)) != corpus) std::abort();
    ByteTokenizer again = ByteTokenizer::from_vocab(tok.vocab());  // as a checkpoint's config restores it
    if (again.encode(corpus) != tok.encode(corpus)) std::abort();
    TextDataset ds(corpus, tok, context);
    Generator gen(data[0]);
    for (Split s : {Split::Train, Split::Val}) {
      check_batch(ds.sample(s, batch, gen), tok.size());
      for (const Batch& b : ds.eval_batches(s, batch, 4)) check_batch(b, tok.size());
    }
  } catch (const Error&) {
    // an empty corpus, or one too short for the context: refused with a message
  }
  return 0;
}
