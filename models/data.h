// Data for the three kinds of task (DESIGN.md sections 5-7):
//   - LM: a byte-level tokenizer over any text file, split 90 % train / 10 % validation by bytes, random training
//     windows and consecutive evaluation windows;
//   - the paper's five synthetic tasks (REVERSE, SORT, SUB, SWAP, COPY) over digit sequences;
//   - Fashion-MNIST from its IDX files (gzipped or not).
// Everything here is plain data (int64 / float32 Arrays); nothing knows about models or gradients.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/array.h"
#include "tensor/random.h"

namespace qkvlab {

// ---------------------------------------------------------------------------------------------------------------
// Files

// The bytes of a file. A missing file, a directory or an unreadable file is an Error naming the path.
std::string read_file(const std::string& path);

// ---------------------------------------------------------------------------------------------------------------
// Byte tokenizer: one token per distinct byte of the corpus, ids in increasing byte order.
// "hello" -> vocabulary e h l o (ids 0..3), encode("hell") = 1 0 2 2.

class ByteTokenizer {
 public:
  ByteTokenizer() = default;  // empty vocabulary; build one with from_corpus or from_vocab
  // The distinct bytes of `bytes`, sorted by byte value. An empty corpus is an error ("corpus is empty").
  static ByteTokenizer from_corpus(const std::string& bytes);
  // vocab[id] = the byte value of token id (as saved in a checkpoint's config). Values must be in 0..255 and unique;
  // the order is kept as given.
  static ByteTokenizer from_vocab(const std::vector<int>& vocab);

  // A byte that is not in the vocabulary is an error naming it and its position:
  // "tokenizer: byte 0xC3 ('\303') at position 17 is not in the vocabulary of 65 bytes"
  std::vector<int64_t> encode(const std::string& text) const;
  // An id outside 0..size()-1 is an error naming it and its position.
  std::string decode(const std::vector<int64_t>& ids) const;

  const std::vector<int>& vocab() const { return vocab_; }  // the byte value of each id
  int64_t size() const { return int64_t(vocab_.size()); }
  bool contains(uint8_t byte) const { return id_[byte] >= 0; }
  int64_t id_of(uint8_t byte) const;  // error if absent

 private:
  std::vector<int> vocab_;
  std::array<int16_t, 256> id_ = filled_minus_one();  // byte -> id, -1 when absent
  static std::array<int16_t, 256> filled_minus_one() {
    std::array<int16_t, 256> a;
    a.fill(-1);
    return a;
  }
};

// "'a'", "'\n'", "'\303'": a byte as a C character literal, for error messages.
std::string byte_literal(uint8_t byte);

// ---------------------------------------------------------------------------------------------------------------
// Batches and windows

struct Batch {
  Array x;  // (B,T) int64 token ids, or (B,1,28,28) float32 images
  Array y;  // (B,T) int64 targets, or (B) int64 labels
};

// Consecutive, non-overlapping windows of context+1 tokens from the start of `tokens` (DESIGN.md section 7,
// `eval --data`): window k covers tokens [k*(context+1), (k+1)*(context+1)); its inputs are the first `context`
// tokens, its targets the next token at each position (x shifted by one). A tail shorter than context+1 is dropped.
// Windows are grouped into batches of at most batch_size; max_windows > 0 keeps only the first max_windows.
// Fewer than context+1 tokens is an error saying how many are needed.
std::vector<Batch> eval_windows(const std::vector<int64_t>& tokens, int64_t context, int64_t batch_size,
                                int64_t max_windows = 0);
int64_t count_eval_windows(int64_t n_tokens, int64_t context);  // n_tokens / (context+1)

// ---------------------------------------------------------------------------------------------------------------
// LM data: a text corpus as token ids, split by bytes into the first 90 % (train) and the last 10 % (validation).

enum class Split { Train, Val };
const char* split_name(Split s);  // "train", "validation"

class TextDataset {
 public:
  // Both splits must hold at least context+1 bytes; otherwise the error says how many bytes the file needs.
  // Every byte of the corpus must be in the tokenizer's vocabulary.
  TextDataset(const std::string& corpus, const ByteTokenizer& tokenizer, int64_t context);

  // batch_size random windows of the split: x (B,T) = tokens [s, s+T), y (B,T) = tokens [s+1, s+T+1), with each
  // start s drawn uniformly from the split's 0..n-T-1 by gen (so a seed fixes the batches).
  Batch sample(Split split, int64_t batch_size, Generator& gen) const;
  // eval_windows over one split.
  std::vector<Batch> eval_batches(Split split, int64_t batch_size, int64_t max_windows = 0) const;

  const std::vector<int64_t>& tokens(Split split) const { return split == Split::Train ? train_ : val_; }
  int64_t context() const { return context_; }
  const ByteTokenizer& tokenizer() const { return tokenizer_; }

  // Bytes of a corpus of n bytes that go to training: the first floor(0.9 n).
  static int64_t train_bytes(int64_t n) { return n * 9 / 10; }
  // The smallest corpus whose two splits both hold context+1 bytes: 10*context + 1.
  static int64_t min_corpus_bytes(int64_t context);

 private:
  ByteTokenizer tokenizer_;
  int64_t context_;
  std::vector<int64_t> train_, val_;
};

// ---------------------------------------------------------------------------------------------------------------
// The paper's synthetic tasks: x is a sequence of T random digits 0-9, y the digit sequence the model must output
// at each position (a per-token 10-way classification, no causal mask).

enum class SyntheticTask { Reverse, Sort, Sub, Swap, Copy };

// "reverse", "sort", "sub", "swap", "copy" (any case). Anything else is an error listing the valid names.
SyntheticTask parse_task(const std::string& name);
const char* task_name(SyntheticTask task);  // the lower-case CLI name

struct SyntheticData {
  Array x;  // (N,T) int64 digits 0-9
  Array y;  // (N,T) int64 targets
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

// The target for one input sequence:
//   REVERSE y = x reversed            3 1 4 -> 4 1 3
//   SORT    y = x sorted ascending    3 1 4 -> 1 3 4
//   SUB     y_i = 9 - x_i             3 1 4 -> 6 8 5
//   SWAP    y = second half, then first half (T must be even)   3 1 4 1 -> 4 1 3 1
//   COPY    y = x
std::vector<int64_t> synthetic_target(SyntheticTask task, const std::vector<int64_t>& x);

// n sequences of length T, digits drawn from Generator(seed). The same arguments give the same data everywhere.
SyntheticData make_synthetic(SyntheticTask task, int64_t n, int64_t T, uint64_t seed);

struct SyntheticSplits {
  SyntheticData train, test;
};
// The paper's sizes by default: 10k training and 2k test sequences, from two different seeds derived from `seed`
// (synthetic_seeds). Sequences are random, so for small T the test set can share some sequences with training.
SyntheticSplits make_synthetic_splits(SyntheticTask task, int64_t T, uint64_t seed, int64_t n_train = 10000,
                                      int64_t n_test = 2000);
struct SyntheticSeeds {
  uint64_t train, test;
};
SyntheticSeeds synthetic_seeds(uint64_t seed);  // the first two outputs of Generator(seed)

// ---------------------------------------------------------------------------------------------------------------
// Shuffled epochs over N examples: each epoch is a fresh random permutation; next() hands out batch_size indices
// at a time, and starts a new epoch when fewer than batch_size remain in the current one (the tail is skipped, so
// every batch is full). The permutation of an epoch is drawn from a seed taken from the caller's generator, so the
// whole sampler state is three numbers (state()/set_state(), for resuming a run exactly).

class EpochSampler {
 public:
  explicit EpochSampler(int64_t n);
  // The next batch of the current epoch's permutation. With keep_last (PyTorch's drop_last=False) an epoch ends
  // with the partial batch of the n % batch_size left over; without, those are skipped.
  std::vector<int64_t> next(int64_t batch_size, Generator& gen);
  void set_keep_last(bool on) { keep_last_ = on; }
  int64_t size() const { return n_; }
  int64_t epoch() const { return state_.epoch; }  // epochs started so far

  struct State {
    int64_t epoch = 0;       // 0: no epoch started yet
    uint64_t perm_seed = 0;  // seed of the current epoch's permutation
    int64_t pos = 0;         // indices of the current epoch handed out
  };
  State state() const { return state_; }
  void set_state(const State& s);

 private:
  void build_perm();
  int64_t n_;
  State state_;
  std::vector<int64_t> perm_;
  bool keep_last_ = false;
};

// Rows idx of a (N, ...) array, stacked into a (len(idx), ...) contiguous array of the same dtype.
Array take_rows(const Array& a, const std::vector<int64_t>& idx);
// x and y rows idx of a dataset (synthetic sequences, or images and labels).
Batch take_batch(const Array& x, const Array& y, const std::vector<int64_t>& idx);

// ---------------------------------------------------------------------------------------------------------------
// Fashion-MNIST (Debian package dataset-fashion-mnist installs the four gzipped IDX files in this directory).

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// An IDX file: 4-byte magic (0, 0, type, ndims), ndims big-endian uint32 sizes, then the data, row-major.
// Only unsigned-byte data (type 0x08) is supported.
struct IdxFile {
  uint32_t magic = 0;          // 2051 = 0x00000803 for images (ubyte, 3 dims), 2049 = 0x00000801 for labels
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;   // prod(dims) bytes
};
// Validates the magic, the sizes and the length (truncated or trailing data are errors naming `source`).
// Never reads outside [data, data + size) (it is fuzzed).
IdxFile parse_idx(const uint8_t* data, size_t size, const std::string& source);

// The bytes of `path`, gunzipped if it is gzip-compressed (a plain file is read as is). Errors name the path.
std::vector<uint8_t> read_gz_file(const std::string& path);

struct ImageSet {
  Array images;  // (N,1,28,28) float32 in [0,1] (pixel / 255)
  Array labels;  // (N) int64 in 0..9
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};
// Checks an images IDX (magic 2051, N x 28 x 28) against a labels IDX (magic 2049, N labels in 0..9).
ImageSet make_image_set(const IdxFile& images, const IdxFile& labels, const std::string& images_source,
                        const std::string& labels_source);

// One split, from <dir>/<prefix>-images-idx3-ubyte[.gz] and <dir>/<prefix>-labels-idx1-ubyte[.gz]
// with prefix "train" (60000 images) or "t10k" (10000). The .gz file is preferred when both exist.
ImageSet load_fashion_mnist_split(const std::string& dir, bool train);
struct FashionMnist {
  ImageSet train, test;
};
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDir);
// True when all four files (gzipped or not) are in dir.
bool fashion_mnist_available(const std::string& dir = kFashionMnistDir);

// "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
const std::vector<std::string>& fashion_mnist_classes();

}  // namespace qkvlab
