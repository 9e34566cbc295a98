// Data (models/data.h): files, the byte tokenizer, LM windows and splits, the paper's synthetic tasks, the epoch
// sampler and Fashion-MNIST's IDX files.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "models/data.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {

// A temporary folder for this file's tests (tests/test_util.h).
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("data") {}
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void write_gz(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// An IDX buffer: magic (0, 0, 0x08, ndims), big-endian sizes, then the bytes.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> b{0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
// n images of 28x28 where image i has every pixel = 10*i + (pixel index % 10), and labels i % 10.
std::vector<uint8_t> fake_images(uint32_t n) {
  std::vector<uint8_t> px(size_t(n) * 784);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(10 * (i / 784) + (i % 784) % 10);
  return idx_bytes({n, 28, 28}, px);
}
std::vector<uint8_t> fake_labels(uint32_t n) {
  std::vector<uint8_t> l(n);
  for (uint32_t i = 0; i < n; ++i) l[i] = uint8_t(i % 10);
  return idx_bytes({n}, l);
}

std::vector<int64_t> row(const Array& a, int64_t i) { return a.select(0, i).contiguous().to_ints(); }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Files and the tokenizer

TEST_CASE("read_file: returns every byte, and names the path when it cannot", "[data]") {
  TempDir dir;
  std::string bytes("a\0b\xff\n", 5);
  write_bytes(dir.file("f.txt"), std::vector<uint8_t>(bytes.begin(), bytes.end()));
  REQUIRE(read_file(dir.file("f.txt")) == bytes);
  write_bytes(dir.file("empty.txt"), {});
  REQUIRE(read_file(dir.file("empty.txt")).empty());
  REQUIRE_THROWS_WITH(read_file(dir.file("missing.txt")),
                      Contains(dir.file("missing.txt")) && Contains("No such file"));
  REQUIRE_THROWS_WITH(read_file(dir.path), Contains(dir.path) && Contains("directory"));
  if (::geteuid() != 0) {  // root reads anything
    ::chmod(dir.file("f.txt").c_str(), 0);
    REQUIRE_THROWS_WITH(read_file(dir.file("f.txt")), Contains(dir.file("f.txt")) && Contains("denied"));
  }
}

TEST_CASE("ByteTokenizer: the vocabulary is the corpus's distinct bytes in byte order", "[data]") {
  ByteTokenizer t = ByteTokenizer::from_corpus("hello world\n");
  REQUIRE(t.vocab() == std::vector<int>{'\n', ' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w'});
  REQUIRE(t.size() == 9);
  REQUIRE(t.encode("hello") == std::vector<int64_t>{4, 3, 5, 5, 6});
  REQUIRE(t.decode({4, 3, 5, 5, 6}) == "hello");
  REQUIRE(t.decode(t.encode("hello world\n")) == "hello world\n");
  REQUIRE(t.contains('w'));
  REQUIRE_FALSE(t.contains('x'));
  REQUIRE(t.id_of('w') == 8);
  REQUIRE(t.encode("").empty());

  // Every byte value, including 0 and 255, survives a round trip.
  std::string all;
  for (int b = 255; b >= 0; --b) all.push_back(char(b));
  ByteTokenizer full = ByteTokenizer::from_corpus(all);
  REQUIRE(full.size() == 256);
  REQUIRE(full.encode(all).front() == 255);
  REQUIRE(full.decode(full.encode(all)) == all);
}

TEST_CASE("ByteTokenizer: from_vocab keeps a checkpoint's order and validates it", "[data]") {
  ByteTokenizer t = ByteTokenizer::from_vocab({'b', 'a', 10});
  REQUIRE(t.encode("ab\n") == std::vector<int64_t>{1, 0, 2});
  REQUIRE(t.vocab() == std::vector<int>{'b', 'a', 10});
  REQUIRE_THROWS_WITH(ByteTokenizer::from_vocab({}), Contains("empty"));
  REQUIRE_THROWS_WITH(ByteTokenizer::from_vocab({1, 256}), Contains("256") && Contains("0..255"));
  REQUIRE_THROWS_WITH(ByteTokenizer::from_vocab({-1}), Contains("-1"));
  REQUIRE_THROWS_WITH(ByteTokenizer::from_vocab({65, 66, 65}), Contains("0x41") && Contains("twice"));
}

TEST_CASE("ByteTokenizer: errors name the byte, its position and the vocabulary size", "[data]") {
  REQUIRE_THROWS_WITH(ByteTokenizer::from_corpus(""), Contains("corpus is empty"));
  std::string corpus;
  for (int b = 'A'; b < 'A' + 26; ++b) corpus.push_back(char(b));
  ByteTokenizer t = ByteTokenizer::from_corpus(corpus);
  std::string text = "ABCDEFGHIJKLMNOPQ\xC3\xA9";
  REQUIRE_THROWS_WITH(t.encode(text),
                      Catch::Matchers::Equals(
                          "tokenizer: byte 0xC3 ('\\303') at position 17 is not in the vocabulary of 26 bytes"));
  REQUIRE_THROWS_WITH(t.encode("AB\n"), Contains("0x0A ('\\n') at position 2"));
  REQUIRE_THROWS_WITH(t.encode("a"), Contains("0x61 ('a') at position 0"));
  REQUIRE_THROWS_WITH(t.decode({0, 1, 26}), Contains("id 26 at position 2") && Contains("26 bytes"));
  REQUIRE_THROWS_WITH(t.decode({-1}), Contains("id -1"));
  REQUIRE(byte_literal('\'') == "'\\''");
  REQUIRE(byte_literal(0) == "'\\0'");
}

// ---------------------------------------------------------------------------------------------------------------
// LM data

namespace {
std::string pseudo_text(size_t n) {  // deterministic text over a 20-letter alphabet
  std::string s(n, ' ');
  uint32_t x = 12345;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = char('a' + (x >> 16) % 20);
  }
  return s;
}
}  // namespace

TEST_CASE("TextDataset: first 90 % of the bytes train, the last 10 % validate", "[data]") {
  std::string corpus = pseudo_text(1003);
  ByteTokenizer tok = ByteTokenizer::from_corpus(corpus);
  TextDataset ds(corpus, tok, 8);
  REQUIRE(ds.tokens(Split::Train).size() == 902);  // floor(0.9 * 1003)
  REQUIRE(ds.tokens(Split::Val).size() == 101);
  std::vector<int64_t> all = tok.encode(corpus);
  REQUIRE(std::equal(all.begin(), all.begin() + 902, ds.tokens(Split::Train).begin()));
  REQUIRE(std::equal(all.begin() + 902, all.end(), ds.tokens(Split::Val).begin()));
  REQUIRE(ds.context() == 8);
  REQUIRE(std::string(split_name(Split::Val)) == "validation");
}

TEST_CASE("TextDataset: a corpus too small for the context says how many bytes it needs", "[data]") {
  const int64_t T = 64;
  REQUIRE(TextDataset::min_corpus_bytes(T) == 641);
  std::string ok = pseudo_text(641);
  TextDataset ds(ok, ByteTokenizer::from_corpus(ok), T);  // validation: exactly 65 bytes
  REQUIRE(ds.tokens(Split::Val).size() == 65);
  std::string small = pseudo_text(640);
  REQUIRE_THROWS_WITH(TextDataset(small, ByteTokenizer::from_corpus(small), T),
                      Contains("640 bytes") && Contains("at least 65") && Contains("at least 641 bytes"));
  // Bytes outside the tokenizer's vocabulary (e.g. a checkpoint's vocabulary on another file) are refused.
  REQUIRE_THROWS_WITH(TextDataset(ok + "Z", ByteTokenizer::from_corpus(ok), 8), Contains("0x5A ('Z') at position 641"));
  REQUIRE_THROWS_WITH(TextDataset(ok, ByteTokenizer::from_corpus(ok), 0), Contains("context"));
}

TEST_CASE("TextDataset: sampled windows are corpus windows, y is x shifted by one, a seed fixes them", "[data]") {
  std::string corpus = pseudo_text(5000);
  ByteTokenizer tok = ByteTokenizer::from_corpus(corpus);
  const int64_t T = 16, B = 32;
  TextDataset ds(corpus, tok, T);
  for (Split split : {Split::Train, Split::Val}) {
    Generator gen(5);
    Batch b = ds.sample(split, B, gen);
    REQUIRE(b.x.dtype() == DType::I64);
    REQUIRE(b.x.shape() == Shape{B, T});
    REQUIRE(b.y.shape() == Shape{B, T});
    const std::vector<int64_t>& toks = ds.tokens(split);
    for (int64_t i = 0; i < B; ++i) {
      std::vector<int64_t> x = row(b.x, i), y = row(b.y, i);
      std::vector<int64_t> xy = x;
      xy.push_back(y.back());
      REQUIRE(std::equal(x.begin() + 1, x.end(), y.begin()));  // y[t] = x[t+1]
      // x followed by the last target is a window of context+1 consecutive tokens of this split.
      REQUIRE(std::search(toks.begin(), toks.end(), xy.begin(), xy.end()) != toks.end());
    }
  }
  Generator g1(42), g2(42), g3(43);
  Batch a = ds.sample(Split::Train, B, g1), b = ds.sample(Split::Train, B, g2), c = ds.sample(Split::Train, B, g3);
  REQUIRE(a.x.to_ints() == b.x.to_ints());
  REQUIRE(a.y.to_ints() == b.y.to_ints());
  REQUIRE(a.x.to_ints() != c.x.to_ints());
  // Consecutive batches from one generator differ.
  Batch a2 = ds.sample(Split::Train, B, g1);
  REQUIRE(a2.x.to_ints() != a.x.to_ints());
}

TEST_CASE("TextDataset: every start position, including the last one, can be drawn", "[data]") {
  // A validation split of exactly context+1 tokens has one window; with one more token, two.
  std::string corpus = pseudo_text(51);  // val = 6 bytes
  TextDataset ds(corpus, ByteTokenizer::from_corpus(corpus), 4);
  REQUIRE(ds.tokens(Split::Val).size() == 6);
  Generator gen(1);
  std::set<int64_t> firsts;
  Batch b = ds.sample(Split::Val, 200, gen);
  for (int64_t i = 0; i < 200; ++i) firsts.insert(b.x.at({i, 0}));
  const std::vector<int64_t>& v = ds.tokens(Split::Val);
  REQUIRE(firsts == std::set<int64_t>{v[0], v[1]});
  REQUIRE(b.y.at({0, 3}) == v[size_t(b.x.at({0, 0}) == v[0] ? 4 : 5)]);
}

TEST_CASE("eval_windows: consecutive windows of context+1 from the start, the tail dropped", "[data]") {
  std::vector<int64_t> toks(27);
  for (int64_t i = 0; i < 27; ++i) toks[size_t(i)] = i;
  REQUIRE(count_eval_windows(27, 4) == 5);
  std::vector<Batch> batches = eval_windows(toks, 4, 2);
  REQUIRE(batches.size() == 3);
  REQUIRE(batches[0].x.shape() == Shape{2, 4});
  REQUIRE(batches[2].x.shape() == Shape{1, 4});
  REQUIRE(row(batches[0].x, 0) == std::vector<int64_t>{0, 1, 2, 3});
  REQUIRE(row(batches[0].y, 0) == std::vector<int64_t>{1, 2, 3, 4});
  REQUIRE(row(batches[0].x, 1) == std::vector<int64_t>{5, 6, 7, 8});
  REQUIRE(row(batches[0].y, 1) == std::vector<int64_t>{6, 7, 8, 9});
  REQUIRE(row(batches[2].x, 0) == std::vector<int64_t>{20, 21, 22, 23});
  REQUIRE(row(batches[2].y, 0) == std::vector<int64_t>{21, 22, 23, 24});  // tokens 25, 26 dropped
  std::vector<Batch> first = eval_windows(toks, 4, 8, 2);
  REQUIRE(first.size() == 1);
  REQUIRE(first[0].x.size(0) == 2);
  REQUIRE_THROWS_WITH(eval_windows(std::vector<int64_t>(4, 0), 4, 8), Contains("4 tokens") && Contains("at least 5"));

  std::string corpus = pseudo_text(1000);
  TextDataset ds(corpus, ByteTokenizer::from_corpus(corpus), 9);
  std::vector<Batch> val = ds.eval_batches(Split::Val, 4);
  REQUIRE(val.size() == 3);  // 100 validation tokens = 10 windows of 10
  REQUIRE(row(val[0].x, 0) == std::vector<int64_t>(ds.tokens(Split::Val).begin(), ds.tokens(Split::Val).begin() + 9));
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic tasks

TEST_CASE("synthetic: each task's target, on the paper's examples", "[data]") {
  using V = std::vector<int64_t>;
  REQUIRE(synthetic_target(SyntheticTask::Reverse, {3, 1, 4}) == V{4, 1, 3});
  REQUIRE(synthetic_target(SyntheticTask::Sort, {3, 1, 4, 1, 5, 9, 2, 6}) == V{1, 1, 2, 3, 4, 5, 6, 9});
  REQUIRE(synthetic_target(SyntheticTask::Sub, {3, 1, 4, 0, 9}) == V{6, 8, 5, 9, 0});
  REQUIRE(synthetic_target(SyntheticTask::Swap, {3, 1, 4, 1, 5, 9}) == V{1, 5, 9, 3, 1, 4});
  REQUIRE(synthetic_target(SyntheticTask::Copy, {3, 1, 4}) == V{3, 1, 4});
  REQUIRE_THROWS_WITH(synthetic_target(SyntheticTask::Swap, {3, 1, 4}), Contains("even") && Contains("3"));
}

TEST_CASE("synthetic: parse_task accepts the five names in any case and lists them otherwise", "[data]") {
  REQUIRE(parse_task("reverse") == SyntheticTask::Reverse);
  REQUIRE(parse_task("SORT") == SyntheticTask::Sort);
  REQUIRE(parse_task("Sub") == SyntheticTask::Sub);
  REQUIRE(parse_task("swap") == SyntheticTask::Swap);
  REQUIRE(parse_task("copy") == SyntheticTask::Copy);
  for (SyntheticTask t : {SyntheticTask::Reverse, SyntheticTask::Sort, SyntheticTask::Sub, SyntheticTask::Swap,
                          SyntheticTask::Copy})
    REQUIRE(parse_task(task_name(t)) == t);
  REQUIRE_THROWS_WITH(parse_task("revrse"), Contains("'revrse'") && Contains("reverse, sort, sub, swap, copy"));
}

TEST_CASE("synthetic: datasets are digit sequences with the task's targets, reproducible from a seed", "[data]") {
  for (SyntheticTask task : {SyntheticTask::Reverse, SyntheticTask::Sort, SyntheticTask::Sub, SyntheticTask::Swap,
                             SyntheticTask::Copy}) {
    INFO(task_name(task));
    SyntheticData d = make_synthetic(task, 50, 8, 123);
    REQUIRE(d.size() == 50);
    REQUIRE(d.x.dtype() == DType::I64);
    REQUIRE(d.x.shape() == Shape{50, 8});
    REQUIRE(d.y.shape() == Shape{50, 8});
    std::vector<int64_t> xs = d.x.to_ints();
    REQUIRE(*std::min_element(xs.begin(), xs.end()) == 0);
    REQUIRE(*std::max_element(xs.begin(), xs.end()) == 9);
    for (int64_t i = 0; i < 50; ++i) REQUIRE(row(d.y, i) == synthetic_target(task, row(d.x, i)));
    SyntheticData again = make_synthetic(task, 50, 8, 123);
    REQUIRE(again.x.to_ints() == xs);
    REQUIRE(again.y.to_ints() == d.y.to_ints());
    REQUIRE(make_synthetic(task, 50, 8, 124).x.to_ints() != xs);
  }
  // The same seed gives the same inputs for every task: only the targets differ.
  REQUIRE(make_synthetic(SyntheticTask::Sort, 5, 6, 9).x.to_ints() ==
          make_synthetic(SyntheticTask::Copy, 5, 6, 9).x.to_ints());
  REQUIRE_THROWS_WITH(make_synthetic(SyntheticTask::Swap, 10, 7, 0), Contains("even") && Contains("7"));
  REQUIRE_THROWS_WITH(make_synthetic(SyntheticTask::Copy, 0, 7, 0), Contains("number of sequences"));
}

TEST_CASE("synthetic: 10k train and 2k test sequences from two seeds derived from one", "[data]") {
  SyntheticSplits s = make_synthetic_splits(SyntheticTask::Reverse, 16, 0);
  REQUIRE(s.train.size() == 10000);
  REQUIRE(s.test.size() == 2000);
  SyntheticSeeds seeds = synthetic_seeds(0);
  REQUIRE(seeds.train != seeds.test);
  REQUIRE(s.train.x.to_ints() == make_synthetic(SyntheticTask::Reverse, 10000, 16, seeds.train).x.to_ints());
  REQUIRE(s.test.x.to_ints() == make_synthetic(SyntheticTask::Reverse, 2000, 16, seeds.test).x.to_ints());
  // Test sequences are not the first training sequences.
  REQUIRE(row(s.test.x, 0) != row(s.train.x, 0));
  SyntheticSplits small = make_synthetic_splits(SyntheticTask::Sub, 4, 1, 30, 7);
  REQUIRE(small.train.size() == 30);
  REQUIRE(small.test.size() == 7);
}

TEST_CASE("EpochSampler: shuffled epochs that visit every example once, resumable", "[data]") {
  EpochSampler s(10);
  Generator gen(3);
  std::vector<int64_t> seen;
  for (int i = 0; i < 5; ++i) {
    std::vector<int64_t> b = s.next(2, gen);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  REQUIRE(s.epoch() == 1);
  std::vector<int64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  REQUIRE(sorted == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  REQUIRE(seen != sorted);  // shuffled
  std::vector<int64_t> next_epoch = s.next(2, gen);
  REQUIRE(s.epoch() == 2);

  // A batch that does not fit in what is left of the epoch starts a new one: every batch is full.
  EpochSampler t(10);
  Generator g2(3);
  REQUIRE(t.next(4, g2).size() == 4);
  REQUIRE(t.next(4, g2).size() == 4);
  REQUIRE(t.epoch() == 1);
  REQUIRE(t.next(4, g2).size() == 4);
  REQUIRE(t.epoch() == 2);

  // Resuming from state() (and the generator's state) continues the exact sequence.
  EpochSampler a(37);
  Generator ga(8);
  for (int i = 0; i < 7; ++i) a.next(5, ga);
  EpochSampler::State st = a.state();
  Generator::State gst = ga.state();
  std::vector<std::vector<int64_t>> want;
  for (int i = 0; i < 20; ++i) want.push_back(a.next(5, ga));
  EpochSampler b(37);
  b.set_state(st);
  Generator gb(0);
  gb.set_state(gst);
  for (int i = 0; i < 20; ++i) REQUIRE(b.next(5, gb) == want[size_t(i)]);

  REQUIRE_THROWS_WITH(a.next(38, ga), Contains("1..37"));
  REQUIRE_THROWS(EpochSampler(0));
}

TEST_CASE("take_rows / take_batch: gather examples by index, any dtype and rank", "[data]") {
  SyntheticData d = make_synthetic(SyntheticTask::Sub, 6, 4, 2);
  Batch b = take_batch(d.x, d.y, {5, 0, 5});
  REQUIRE(b.x.shape() == Shape{3, 4});
  REQUIRE(row(b.x, 0) == row(d.x, 5));
  REQUIRE(row(b.x, 1) == row(d.x, 0));
  REQUIRE(row(b.y, 2) == row(d.y, 5));
  Array imgs = Array::arange(24).view({3, 1, 2, 4});
  Array picked = take_rows(imgs, {2});
  REQUIRE(picked.shape() == Shape{1, 1, 2, 4});
  REQUIRE(picked.to_vector() == std::vector<double>{16, 17, 18, 19, 20, 21, 22, 23});
  Array labels = Array::arange(3, DType::I64).slice(0, 0, 3, 2);  // non-contiguous: 0, 2
  REQUIRE(take_rows(labels, {1, 0}).to_ints() == std::vector<int64_t>{2, 0});
  REQUIRE_THROWS_WITH(take_rows(imgs, {3}), Contains("index 3") && Contains("3 rows"));
}

// ---------------------------------------------------------------------------------------------------------------
// IDX files and Fashion-MNIST

TEST_CASE("parse_idx: good files, and each kind of broken one", "[data]") {
  std::vector<uint8_t> good = idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6});
  IdxFile f = parse_idx(good.data(), good.size(), "g");
  REQUIRE(f.magic == 0x0802);
  REQUIRE(f.dims == std::vector<int64_t>{2, 3});
  REQUIRE(f.data == std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
  std::vector<uint8_t> imgs = fake_images(3);
  REQUIRE(parse_idx(imgs.data(), imgs.size(), "i").magic == 2051);
  std::vector<uint8_t> labels = fake_labels(3);
  REQUIRE(parse_idx(labels.data(), labels.size(), "l").magic == 2049);

  std::vector<uint8_t> bad = good;
  bad[0] = 0x1f;  // e.g. a gzip file read without gunzip
  REQUIRE_THROWS_WITH(parse_idx(bad.data(), bad.size(), "src"), Contains("src") && Contains("bad magic"));
  std::vector<uint8_t> floats = idx_bytes({1}, {0, 0, 0, 0}, 0x0D);
  REQUIRE_THROWS_WITH(parse_idx(floats.data(), floats.size(), "src"), Contains("0x0D") && Contains("unsigned bytes"));
  REQUIRE_THROWS_WITH(parse_idx(good.data(), 3, "src"), Contains("too short"));
  REQUIRE_THROWS_WITH(parse_idx(good.data(), 10, "src"), Contains("too short for the 2 sizes"));
  REQUIRE_THROWS_WITH(parse_idx(good.data(), good.size() - 1, "src"),
                      Contains("truncated") && Contains("2 x 3 needs 6 data bytes, the file has 5"));
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  REQUIRE_THROWS_WITH(parse_idx(longer.data(), longer.size(), "src"), Contains("trailing"));
  std::vector<uint8_t> huge = idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, {});
  REQUIRE_THROWS_WITH(parse_idx(huge.data(), huge.size(), "src"), Contains("overflow"));
}

TEST_CASE("parse_idx: random corruptions are refused with an Error, never a crash", "[data]") {
  Generator gen(4);
  std::vector<uint8_t> good = idx_bytes({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> b = good;
    if (i % 2) b.resize(size_t(gen.randint(0, int64_t(b.size()))));
    else b[size_t(gen.randint(0, int64_t(b.size())))] = uint8_t(gen.randint(0, 256));
    try {
      IdxFile f = parse_idx(b.data(), b.size(), "fuzz");
      int64_t n = 1;
      for (int64_t d : f.dims) n *= d;
      REQUIRE(int64_t(f.data.size()) == n);
    } catch (const Error& e) {
      REQUIRE_THAT(e.what(), Contains("fuzz"));
    }
  }
}

TEST_CASE("make_image_set: checks the magic numbers, sizes, counts and labels", "[data]") {
  auto parse = [](const std::vector<uint8_t>& b) { return parse_idx(b.data(), b.size(), "buf"); };
  ImageSet s = make_image_set(parse(fake_images(12)), parse(fake_labels(12)), "img", "lab");
  REQUIRE(s.size() == 12);
  REQUIRE(s.images.dtype() == DType::F32);
  REQUIRE(s.images.shape() == Shape{12, 1, 28, 28});
  REQUIRE(s.labels.shape() == Shape{12});
  REQUIRE(s.labels.at({11}) == 1);
  REQUIRE(s.images.at({1, 0, 0, 3}) == Approx(13.0 / 255.0));
  std::vector<float> px = s.images.to_floats();
  REQUIRE(*std::max_element(px.begin(), px.end()) <= 1.0f);
  REQUIRE(*std::min_element(px.begin(), px.end()) >= 0.0f);

  REQUIRE_THROWS_WITH(make_image_set(parse(fake_labels(3)), parse(fake_labels(3)), "img", "lab"),
                      Contains("img") && Contains("expected 2051"));
  REQUIRE_THROWS_WITH(make_image_set(parse(fake_images(3)), parse(fake_images(3)), "img", "lab"),
                      Contains("lab") && Contains("expected 2049"));
  REQUIRE_THROWS_WITH(make_image_set(parse(fake_images(3)), parse(fake_labels(4)), "img", "lab"),
                      Contains("3 images") && Contains("4 labels"));
  REQUIRE_THROWS_WITH(make_image_set(parse(idx_bytes({1, 28, 27}, std::vector<uint8_t>(28 * 27))),
                                     parse(fake_labels(1)), "img", "lab"),
                      Contains("28 x 28") && Contains("(1,28,27)"));
  REQUIRE_THROWS_WITH(make_image_set(parse(fake_images(1)), parse(idx_bytes({1}, {10})), "img", "lab"),
                      Contains("label 10 of example 0"));
  REQUIRE(fashion_mnist_classes().size() == 10);
  REQUIRE(fashion_mnist_classes()[9] == "Ankle boot");
}

TEST_CASE("load_fashion_mnist: gzipped or plain IDX files in a directory", "[data]") {
  TempDir dir;
  REQUIRE_FALSE(fashion_mnist_available(dir.path));
  REQUIRE_THROWS_WITH(load_fashion_mnist(dir.path),
                      Contains("train-images-idx3-ubyte.gz") && Contains("dataset-fashion-mnist"));
  write_gz(dir.file("train-images-idx3-ubyte.gz"), fake_images(20));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), fake_labels(20));
  write_bytes(dir.file("t10k-images-idx3-ubyte"), fake_images(5));  // uncompressed also works
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), fake_labels(5));
  REQUIRE(fashion_mnist_available(dir.path));
  FashionMnist d = load_fashion_mnist(dir.path);
  REQUIRE(d.train.size() == 20);
  REQUIRE(d.test.size() == 5);
  REQUIRE(d.train.labels.at({13}) == 3);
  REQUIRE(d.test.images.at({4, 0, 27, 27}) == Approx((40 + 783 % 10) / 255.0));

  // A truncated gzip stream is an error naming the file.
  std::vector<uint8_t> gz;
  {
    write_gz(dir.file("tmp.gz"), fake_images(20));
    std::ifstream f(dir.file("tmp.gz"), std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  gz.resize(gz.size() / 2);
  write_bytes(dir.file("train-images-idx3-ubyte.gz"), gz);
  REQUIRE_THROWS_WITH(load_fashion_mnist_split(dir.path, true),
                      Contains("train-images-idx3-ubyte.gz") && Contains("truncated"));
  // Count mismatch between the files of a split.
  write_gz(dir.file("train-images-idx3-ubyte.gz"), fake_images(19));
  REQUIRE_THROWS_WITH(load_fashion_mnist_split(dir.path, true), Contains("19 images") && Contains("20 labels"));
  REQUIRE_THROWS_WITH(read_gz_file(dir.file("nope.gz")), Contains("nope.gz"));
  REQUIRE_THROWS_WITH(read_gz_file(dir.path), Contains("directory"));
}

TEST_CASE("load_fashion_mnist: the real dataset, when installed", "[data][fmnist]") {
  if (!fashion_mnist_available()) {
    WARN("Fashion-MNIST is not in " << kFashionMnistDir << " (apt-get install dataset-fashion-mnist): skipped");
    return;
  }
  FashionMnist d = load_fashion_mnist();
  REQUIRE(d.train.images.shape() == Shape{60000, 1, 28, 28});
  REQUIRE(d.train.labels.shape() == Shape{60000});
  REQUIRE(d.test.images.shape() == Shape{10000, 1, 28, 28});
  REQUIRE(d.test.labels.shape() == Shape{10000});
  std::vector<int64_t> counts(10, 0);
  const int64_t* labels = d.train.labels.data<int64_t>();
  for (int64_t i = 0; i < 60000; ++i) counts[size_t(labels[i])]++;
  REQUIRE(counts == std::vector<int64_t>(10, 6000));  // balanced: 6000 per class
  const float* px = d.test.images.data<float>();  // (not to_floats(): 7.8M elements, slow under the sanitizers)
  auto [lo, hi] = std::minmax_element(px, px + d.test.images.numel());
  REQUIRE(*lo == 0.0f);
  REQUIRE(*hi == 1.0f);
  REQUIRE(d.train.labels.at({0}) == 9);  // the first training image is an ankle boot
}
