#include "models/data.h"

#include <dirent.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>

namespace qkvlab {

// ---------------------------------------------------------------------------------------------------------------
// Files

namespace {
// Read errno in a statement after the failing call, never as an argument beside it (argument order is unspecified).
std::string errno_str() { return std::strerror(errno); }

bool stat_path(const std::string& path, struct stat& st) { return ::stat(path.c_str(), &st) == 0; }
}  // namespace

std::string read_file(const std::string& path) {
  check(!path.empty(), "read_file: no path given");
  struct stat st;
  if (!stat_path(path, st)) fail("cannot read ", path, ": ", errno_str());
  check(!S_ISDIR(st.st_mode), "cannot read ", path, ": it is a directory, expected a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail("cannot read ", path, ": ", errno_str());
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
  char buf[1 << 16];
  size_t r;
  while ((r = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, r);
  bool bad = std::ferror(f);
  std::string why = bad ? errno_str() : "";
  std::fclose(f);
  check(!bad, "cannot read ", path, ": ", why);
  return out;
}

std::string default_corpus_dir() {
  const char* env = std::getenv("QKVLAB_CORPUS_DIR");
  return env != nullptr && *env != '\0' ? env : "/usr/share/games/fortunes";
}

void missing_default_corpus(const std::string& dir) {
  fail("--task lm: no --data FILE given and the default corpus ", dir, " is missing: install it with ",
       "`apt-get install fortunes` (or make deps), or pass --data FILE (any text file)");
}

std::string read_corpus(const std::string& path, int* files) {
  check(!path.empty(), "read_corpus: no path given");
  struct stat st;
  if (!stat_path(path, st)) fail("cannot read ", path, ": ", errno_str());
  if (!S_ISDIR(st.st_mode)) {
    if (files != nullptr) *files = 1;
    return read_file(path);
  }
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) fail("cannot read the folder ", path, ": ", errno_str());
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".dat") == 0) continue;  // fortune(6)'s binary index files
    struct stat fs;
    // lstat: the .u8 names of the fortunes package are links to the same files; sub-folders (off/) are left out.
    if (::lstat((path + "/" + n).c_str(), &fs) != 0 || !S_ISREG(fs.st_mode)) continue;
    names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());  // byte order, independent of the locale and of readdir's order
  check(!names.empty(), "the folder ", path, " holds no text files");
  std::string out;
  for (const auto& n : names) {
    out += read_file(path + "/" + n);
    if (!out.empty() && out.back() != '\n') out += '\n';
  }
  if (files != nullptr) *files = int(names.size());
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Byte tokenizer

std::string byte_literal(uint8_t b) {
  switch (b) {
    case '\n': return "'\\n'";
    case '\t': return "'\\t'";
    case '\r': return "'\\r'";
    case '\0': return "'\\0'";
    case '\'': return "'\\''";
    case '\\': return "'\\\\'";
  }
  if (b >= 0x20 && b < 0x7f) return std::string("'") + char(b) + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "'\\%03o'", unsigned(b));
  return buf;
}

namespace {
std::string byte_hex(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", unsigned(b));
  return buf;
}
}  // namespace

ByteTokenizer ByteTokenizer::from_corpus(const std::string& bytes) {
  check(!bytes.empty(), "tokenizer: corpus is empty");
  bool present[256] = {};
  for (unsigned char c : bytes) present[c] = true;
  std::vector<int> vocab;
  for (int b = 0; b < 256; ++b)
    if (present[b]) vocab.push_back(b);
  return from_vocab(vocab);
}

ByteTokenizer ByteTokenizer::from_vocab(const std::vector<int>& vocab) {
  check(!vocab.empty(), "tokenizer: the vocabulary is empty");
  check(vocab.size() <= 256, "tokenizer: a byte vocabulary has at most 256 entries, got ", vocab.size());
  ByteTokenizer t;
  for (size_t i = 0; i < vocab.size(); ++i) {
    int b = vocab[i];
    check(b >= 0 && b <= 255, "tokenizer: vocabulary entry ", i, " is ", b, ", expected a byte value 0..255");
    check(t.id_[b] < 0, "tokenizer: byte ", byte_hex(uint8_t(b)), " appears twice in the vocabulary (ids ", t.id_[b],
          " and ", i, ")");
    t.id_[b] = int16_t(i);
  }
  t.vocab_ = vocab;
  return t;
}

int64_t ByteTokenizer::id_of(uint8_t byte) const {
  check(id_[byte] >= 0, "tokenizer: byte ", byte_hex(byte), " (", byte_literal(byte), ") is not in the vocabulary of ",
        vocab_.size(), " bytes");
  return id_[byte];
}

std::vector<int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    uint8_t b = uint8_t(text[i]);
    int16_t id = id_[b];
    if (id < 0) [[unlikely]]
      fail("tokenizer: byte ", byte_hex(b), " (", byte_literal(b), ") at position ", i,
           " is not in the vocabulary of ", vocab_.size(), " bytes");
    ids[i] = id;
  }
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id = ids[i];
    check(id >= 0 && id < size(), "tokenizer: id ", id, " at position ", i, " is out of range for a vocabulary of ",
          vocab_.size(), " bytes (ids 0..", size() - 1, ")");
    out[i] = char(uint8_t(vocab_[size_t(id)]));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Windows

int64_t count_eval_windows(int64_t n_tokens, int64_t context) {
  check(context >= 1, "eval windows: context must be >= 1, got ", context);
  return n_tokens / (context + 1);
}

std::vector<Batch> eval_windows(const std::vector<int64_t>& tokens, int64_t context, int64_t batch_size,
                                int64_t max_windows) {
  check(batch_size >= 1, "eval windows: batch size must be >= 1, got ", batch_size);
  check(max_windows >= 0, "eval windows: max_windows must be >= 0, got ", max_windows);
  const int64_t n = int64_t(tokens.size());
  int64_t windows = count_eval_windows(n, context);
  check(windows >= 1, "eval windows: ", n, " tokens are too few for one window of context+1 = ", context + 1,
        " tokens (need at least ", context + 1, ")");
  if (max_windows > 0) windows = std::min(windows, max_windows);
  const int64_t W = context + 1;
  std::vector<Batch> out;
  for (int64_t w0 = 0; w0 < windows; w0 += batch_size) {
    const int64_t B = std::min(batch_size, windows - w0);
    Array x = Array::empty({B, context}, DType::I64), y = Array::empty({B, context}, DType::I64);
    int64_t* px = x.data<int64_t>();
    int64_t* py = y.data<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t* w = tokens.data() + (w0 + b) * W;  // window (w0+b): tokens [(w0+b)*W, (w0+b+1)*W)
      std::copy(w, w + context, px + b * context);       // inputs: the first `context` tokens
      std::copy(w + 1, w + W, py + b * context);         // targets: the next token at each position
    }
    out.push_back({x, y});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// TextDataset

const char* split_name(Split s) { return s == Split::Train ? "train" : "validation"; }

int64_t TextDataset::min_corpus_bytes(int64_t context) {
  // Validation gets n - floor(0.9 n) = ceil(0.1 n) bytes >= context+1  <=>  n >= 10*context + 1; training then has
  // floor(9*context + 0.9) = 9*context >= context+1 bytes for every context >= 1.
  return 10 * context + 1;
}

TextDataset::TextDataset(const std::string& corpus, const ByteTokenizer& tokenizer, int64_t context)
    : tokenizer_(tokenizer), context_(context) {
  check(context >= 1, "text dataset: context must be >= 1, got ", context);
  check(tokenizer.size() > 0, "text dataset: the tokenizer has an empty vocabulary");
  const int64_t n = int64_t(corpus.size());
  const int64_t n_train = train_bytes(n);
  const int64_t n_val = n - n_train;
  if (n_train < context + 1 || n_val < context + 1)
    fail("text dataset: the corpus has ", n, " bytes, split into ", n_train, " for training (first 90 %) and ", n_val,
         " for validation (last 10 %); context ", context, " needs at least ", context + 1,
         " bytes in each split, i.e. a corpus of at least ", min_corpus_bytes(context), " bytes");
  std::vector<int64_t> ids = tokenizer.encode(corpus);
  train_.assign(ids.begin(), ids.begin() + n_train);
  val_.assign(ids.begin() + n_train, ids.end());
}

Batch TextDataset::sample(Split split, int64_t batch_size, Generator& gen) const {
  check(batch_size >= 1, "text dataset: batch size must be >= 1, got ", batch_size);
  const std::vector<int64_t>& t = tokens(split);
  const int64_t T = context_;
  const int64_t starts = int64_t(t.size()) - T;  // s in [0, n-T-1] so that s+T (the last target) is in range
  Array x = Array::empty({batch_size, T}, DType::I64), y = Array::empty({batch_size, T}, DType::I64);
  int64_t* px = x.data<int64_t>();
  int64_t* py = y.data<int64_t>();
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t s = gen.randint(0, starts);
    std::copy(t.begin() + s, t.begin() + s + T, px + b * T);          // (T) inputs
    std::copy(t.begin() + s + 1, t.begin() + s + T + 1, py + b * T);  // (T) targets, shifted by one
  }
  return {x, y};
}

std::vector<Batch> TextDataset::eval_batches(Split split, int64_t batch_size, int64_t max_windows) const {
  return eval_windows(tokens(split), context_, batch_size, max_windows);
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic tasks

namespace {
constexpr SyntheticTask kTasks[] = {SyntheticTask::Reverse, SyntheticTask::Sort, SyntheticTask::Sub,
                                    SyntheticTask::Swap, SyntheticTask::Copy};
}

const char* task_name(SyntheticTask task) {
  switch (task) {
    case SyntheticTask::Reverse: return "reverse";
    case SyntheticTask::Sort: return "sort";
    case SyntheticTask::Sub: return "sub";
    case SyntheticTask::Swap: return "swap";
    case SyntheticTask::Copy: return "copy";
  }
  return "?";
}

SyntheticTask parse_task(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (SyntheticTask t : kTasks)
    if (lower == task_name(t)) return t;
  fail("unknown synthetic task '", name, "'; valid tasks: reverse, sort, sub, swap, copy");
}

std::vector<int64_t> synthetic_target(SyntheticTask task, const std::vector<int64_t>& x) {
  std::vector<int64_t> y = x;
  const size_t T = x.size();
  switch (task) {
    case SyntheticTask::Reverse: std::reverse(y.begin(), y.end()); break;
    case SyntheticTask::Sort: std::sort(y.begin(), y.end()); break;
    case SyntheticTask::Sub:
      for (int64_t& v : y) v = 9 - v;
      break;
    case SyntheticTask::Swap:
      check(T % 2 == 0, "swap: the sequence length must be even (the two halves swap places), got ", T);
      std::rotate(y.begin(), y.begin() + long(T / 2), y.end());  // second half, then first half
      break;
    case SyntheticTask::Copy: break;
  }
  return y;
}

SyntheticData make_synthetic(SyntheticTask task, int64_t n, int64_t T, uint64_t seed) {
  check(n >= 1, task_name(task), ": the number of sequences must be >= 1, got ", n);
  check(T >= 1, task_name(task), ": the sequence length must be >= 1, got ", T);
  check(task != SyntheticTask::Swap || T % 2 == 0, "swap: the sequence length must be even (the two halves swap "
        "places), got ", T);
  Generator gen(seed);
  Array x = Array::empty({n, T}, DType::I64), y = Array::empty({n, T}, DType::I64);
  int64_t* px = x.data<int64_t>();
  int64_t* py = y.data<int64_t>();
  std::vector<int64_t> row(size_t(T), 0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t t = 0; t < T; ++t) row[size_t(t)] = gen.randint(0, 10);  // digits 0-9
    std::vector<int64_t> target = synthetic_target(task, row);
    std::copy(row.begin(), row.end(), px + i * T);
    std::copy(target.begin(), target.end(), py + i * T);
  }
  return {x, y};
}

SyntheticSeeds synthetic_seeds(uint64_t seed) {
  Generator g(seed);
  SyntheticSeeds s;
  s.train = g.next_u64();
  s.test = g.next_u64();
  return s;
}

SyntheticSplits make_synthetic_splits(SyntheticTask task, int64_t T, uint64_t seed, int64_t n_train,
                                      int64_t n_test) {
  SyntheticSeeds s = synthetic_seeds(seed);
  return {make_synthetic(task, n_train, T, s.train), make_synthetic(task, n_test, T, s.test)};
}

// ---------------------------------------------------------------------------------------------------------------
// Epoch sampler

EpochSampler::EpochSampler(int64_t n) : n_(n) { check(n >= 1, "sampler: the dataset is empty"); }

void EpochSampler::build_perm() {
  perm_.resize(size_t(n_));
  std::iota(perm_.begin(), perm_.end(), int64_t(0));
  Generator g(state_.perm_seed);
  for (int64_t i = n_ - 1; i > 0; --i) std::swap(perm_[size_t(i)], perm_[size_t(g.randint(0, i + 1))]);  // Fisher-Yates
}

std::vector<int64_t> EpochSampler::next(int64_t batch_size, Generator& gen) {
  check(batch_size >= 1 && batch_size <= n_, "sampler: batch size must be in 1..", n_, " (the dataset size), got ",
        batch_size);
  if (state_.epoch == 0 || state_.pos >= n_ || (!keep_last_ && state_.pos + batch_size > n_)) {
    state_.epoch += 1;
    state_.perm_seed = gen.next_u64();
    state_.pos = 0;
    build_perm();
  } else if (int64_t(perm_.size()) != n_) {
    build_perm();  // after set_state
  }
  batch_size = std::min(batch_size, n_ - state_.pos);  // keep_last: the epoch's partial batch
  std::vector<int64_t> idx(perm_.begin() + state_.pos, perm_.begin() + state_.pos + batch_size);
  state_.pos += batch_size;
  return idx;
}

void EpochSampler::set_state(const State& s) {
  check(s.epoch >= 0 && s.pos >= 0 && s.pos <= n_, "sampler: invalid state (epoch ", s.epoch, ", position ", s.pos,
        " of ", n_, ")");
  state_ = s;
  perm_.clear();
  if (state_.epoch > 0) build_perm();
}

Array take_rows(const Array& a, const std::vector<int64_t>& idx) {
  check(a.defined() && a.ndim() >= 1, "take_rows: expected an array with at least one dim");
  Array c = a.contiguous();
  const int64_t n = c.size(0);
  const int64_t row = n > 0 ? c.numel() / n : 0;  // elements per row
  Shape shape = c.shape();
  shape[0] = int64_t(idx.size());
  Array out = Array::empty(shape, c.dtype());
  const size_t es = dtype_size(c.dtype());
  const uint8_t* src = static_cast<const uint8_t*>(c.storage()->data()) + c.offset() * int64_t(es);
  uint8_t* dst = static_cast<uint8_t*>(out.storage()->data());
  for (size_t i = 0; i < idx.size(); ++i) {
    check(idx[i] >= 0 && idx[i] < n, "take_rows: index ", idx[i], " is out of range for ", n, " rows");
    std::memcpy(dst + i * size_t(row) * es, src + size_t(idx[i] * row) * es, size_t(row) * es);
  }
  return out;
}

Batch take_batch(const Array& x, const Array& y, const std::vector<int64_t>& idx) {
  return {take_rows(x, idx), take_rows(y, idx)};
}

// ---------------------------------------------------------------------------------------------------------------
// IDX files and Fashion-MNIST

IdxFile parse_idx(const uint8_t* data, size_t size, const std::string& source) {
  const std::string where = "idx: " + source + ": ";
  check(size >= 4, where, "the file is ", size, " bytes, too short for the 4-byte magic number");
  IdxFile f;
  f.magic = (uint32_t(data[0]) << 24) | (uint32_t(data[1]) << 16) | (uint32_t(data[2]) << 8) | uint32_t(data[3]);
  char magic_hex[16];
  std::snprintf(magic_hex, sizeof magic_hex, "0x%08X", f.magic);
  check(data[0] == 0 && data[1] == 0, where, "bad magic number ", f.magic, " (", magic_hex,
        "): an IDX file starts with two zero bytes (not an IDX file, or still compressed?)");
  check(data[2] == 0x08, where, "magic number ", f.magic, " (", magic_hex, ") has data type ", byte_hex(data[2]),
        "; only unsigned bytes (0x08) are supported");
  const size_t ndims = data[3];
  check(ndims >= 1, where, "magic number ", f.magic, " says 0 dims");
  check(size >= 4 + 4 * ndims, where, "the file is ", size, " bytes, too short for the ", ndims,
        " sizes its magic number announces (truncated?)");
  uint64_t numel = 1;
  for (size_t d = 0; d < ndims; ++d) {
    const uint8_t* p = data + 4 + 4 * d;
    uint64_t s = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | uint64_t(p[3]);
    f.dims.push_back(int64_t(s));
    check(!__builtin_mul_overflow(numel, s, &numel), where, "sizes overflow");
  }
  const uint64_t have = size - 4 - 4 * ndims;
  std::ostringstream dims;
  for (size_t d = 0; d < ndims; ++d) dims << (d ? " x " : "") << f.dims[d];
  check(have >= numel, where, "truncated: ", dims.str(), " needs ", numel, " data bytes, the file has ", have);
  check(have == numel, where, dims.str(), " needs ", numel, " data bytes, but the file has ", have - numel,
        " more (trailing data)");
  f.data.assign(data + 4 + 4 * ndims, data + size);
  return f;
}

std::vector<uint8_t> read_gz_file(const std::string& path) {
  struct stat st;
  if (!stat_path(path, st)) fail("cannot read ", path, ": ", errno_str());
  check(!S_ISDIR(st.st_mode), "cannot read ", path, ": it is a directory, expected a file");
  gzFile f = gzopen(path.c_str(), "rb");  // reads gzip or, transparently, plain files
  if (f == nullptr) fail("cannot read ", path, ": ", errno_str());
  gzbuffer(f, 1 << 17);
  constexpr size_t kLimit = size_t(1) << 30;  // 1 GB: far above Fashion-MNIST's 47 MB; stops decompression bombs
  std::vector<uint8_t> out;
  size_t used = 0;
  for (;;) {
    if (out.size() - used < (size_t(1) << 20)) out.resize(std::max(out.size() * 2, used + (size_t(1) << 20)));
    int r = gzread(f, out.data() + used, unsigned(std::min<size_t>(out.size() - used, size_t(1) << 30)));
    if (r < 0) {
      int code;
      std::string why = gzerror(f, &code);
      gzclose(f);
      fail("cannot read ", path, ": ", why, " (corrupt gzip data?)");
    }
    if (r == 0) break;
    used += size_t(r);
    if (used > kLimit) {
      gzclose(f);
      fail("cannot read ", path, ": it decompresses to more than 1 GB");
    }
  }
  out.resize(used);
  int code = Z_OK;
  std::string why = gzerror(f, &code);
  gzclose(f);
  check(code == Z_OK, "cannot read ", path, ": ", code == Z_BUF_ERROR ? "the gzip stream is truncated" : why);
  return out;
}

ImageSet make_image_set(const IdxFile& images, const IdxFile& labels, const std::string& images_source,
                        const std::string& labels_source) {
  check(images.magic == 2051, "fashion-mnist: ", images_source, ": magic number ", images.magic,
        ", expected 2051 (images: unsigned bytes, 3 dims)");
  check(labels.magic == 2049, "fashion-mnist: ", labels_source, ": magic number ", labels.magic,
        ", expected 2049 (labels: unsigned bytes, 1 dim)");
  check(images.dims.size() == 3 && images.dims[1] == 28 && images.dims[2] == 28, "fashion-mnist: ", images_source,
        ": expected N x 28 x 28 images, got ", images.dims);
  check(labels.dims.size() == 1, "fashion-mnist: ", labels_source, ": expected N labels, got ",
        labels.dims);
  const int64_t n = images.dims[0];
  check(labels.dims[0] == n, "fashion-mnist: ", images_source, " has ", n, " images but ", labels_source, " has ",
        labels.dims[0], " labels");
  check(n >= 1, "fashion-mnist: ", images_source, " has no images");
  check(images.data.size() == size_t(n) * 28 * 28 && labels.data.size() == size_t(n), "fashion-mnist: ",
        images_source, ": the data does not match the sizes");
  ImageSet s;
  s.images = Array::empty({n, 1, 28, 28}, DType::F32);  // (N,1,28,28): one channel
  s.labels = Array::empty({n}, DType::I64);
  float* pi = s.images.data<float>();
  for (size_t i = 0; i < images.data.size(); ++i) pi[i] = float(images.data[i]) / 255.0f;
  int64_t* pl = s.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    uint8_t l = labels.data[size_t(i)];
    check(l <= 9, "fashion-mnist: ", labels_source, ": label ", int(l), " of example ", i, " is not a class 0..9");
    pl[i] = l;
  }
  return s;
}

namespace {
// <dir>/<name>.gz, else <dir>/<name>; "" when neither exists.
std::string find_idx(const std::string& dir, const std::string& name) {
  std::string base = dir.empty() ? name : dir + (dir.back() == '/' ? "" : "/") + name;
  struct stat st;
  if (stat_path(base + ".gz", st)) return base + ".gz";
  if (stat_path(base, st)) return base;
  return "";
}
std::string need_idx(const std::string& dir, const std::string& name) {
  std::string p = find_idx(dir, name);
  if (p.empty()) {
    std::string base = dir.empty() ? name : dir + (dir.back() == '/' ? "" : "/") + name;
    fail("fashion-mnist: neither ", base, ".gz nor ", base,
         " exists (install the Debian package dataset-fashion-mnist, or point --data-dir at the IDX files)");
  }
  return p;
}
const char* kFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"};
}  // namespace

ImageSet load_fashion_mnist_split(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string ip = need_idx(dir, prefix + "-images-idx3-ubyte");
  const std::string lp = need_idx(dir, prefix + "-labels-idx1-ubyte");
  std::vector<uint8_t> ib = read_gz_file(ip);
  std::vector<uint8_t> lb = read_gz_file(lp);
  IdxFile images = parse_idx(ib.data(), ib.size(), ip);
  ib.clear();
  ib.shrink_to_fit();
  IdxFile labels = parse_idx(lb.data(), lb.size(), lp);
  return make_image_set(images, labels, ip, lp);
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  return {load_fashion_mnist_split(dir, true), load_fashion_mnist_split(dir, false)};
}

bool fashion_mnist_available(const std::string& dir) {
  for (const char* f : kFiles)
    if (find_idx(dir, f).empty()) return false;
  return true;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace qkvlab
