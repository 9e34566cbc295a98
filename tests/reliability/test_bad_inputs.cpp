// Hostile input through the command line (docs/RELIABILITY.md has the table): every case must end with exit
// status 2 and exactly one line "qkvlab: error: ..." on stderr that says what is wrong, and must leave nothing
// behind (no run directory, no partial file). The cases of tests/app/test_cli.cpp are not repeated here.
#include <catch2/catch.hpp>

#include "tests/cli_child.h"
#include "tests/test_util.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/safetensors.h"
#include "tensor/random.h"

using namespace qkvlab;
using namespace qkvlab::testing;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using V = std::vector<std::string>;

namespace {

V operator+(V a, const V& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
const V kSyn{"--task", "reverse", "--seq-len", "8", "--train-size", "64", "--test-size", "16", "--heads", "2",
             "--layers", "1", "--batch", "8", "--steps", "2"};
const V kLM{"--task", "lm", "--context", "16", "--d-model", "16", "--heads", "4", "--layers", "1", "--batch", "8"};

// Files made once: a corpus, an LM run, a synthetic run, and broken variants of the LM checkpoint.
struct Fixture {
  TempDir tmp{"bad_inputs"};
  std::string corpus, lm, syn;
  Fixture() {
    corpus = tmp.file("corpus.txt");
    write_file(corpus, english_like_text(4000, 3));
    lm = tmp.file("lm");
    syn = tmp.file("syn");
    CliResult a = run_cli(V{"train"} + kLM + V{"--data", corpus, "--steps", "3", "--out", lm}, tmp.path);
    INFO(a.err);
    REQUIRE(a.status == 0);
    CliResult b = run_cli(V{"train"} + kSyn + V{"--d-model", "16", "--out", syn}, tmp.path);
    INFO(b.err);
    REQUIRE(b.status == 0);
  }
  // The LM checkpoint with its config edited (a checkpoint that lies about its model).
  std::string with_config(const std::string& name, const std::string& key, const nlohmann::json& value) {
    Safetensors st = load_safetensors(lm + "/model.safetensors");
    nlohmann::json cfg = nlohmann::json::parse(st.metadata.at("config"));
    cfg[key] = value;
    st.metadata["config"] = cfg.dump();
    const std::string path = tmp.file(name);
    save_safetensors(path, st.tensors, st.metadata);
    return path;
  }
};
Fixture& fixture() {
  static Fixture f;
  return f;
}

// One bad input: status 2, one line on stderr saying `what`, and nothing new in `dir` but the listed entries.
void expect_refused(const V& args, const std::string& what, const std::string& dir, const std::string& extra_env = "") {
  const auto before = std::filesystem::exists(dir) ? std::distance(std::filesystem::directory_iterator(dir),
                                                                   std::filesystem::directory_iterator{})
                                                   : 0;
  CliResult r = run_cli(args, dir, extra_env);
  std::string cmd = "qkvlab";
  for (auto& a : args) cmd += " '" + a + "'";
  INFO(cmd << "\nstatus " << r.status << "\nstderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err_lines() == 1);
  CHECK_THAT(r.err, StartsWith("qkvlab: error: "));
  CHECK_THAT(r.err, Contains(what));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}) == before);
}

}  // namespace

TEST_CASE("bad sizes and numbers for train: one line, exit 2, no run directory", "[reliability][cli]") {
  Fixture& F = fixture();
  TempDir work("bad_sizes");
  const std::string w = work.path, out = "run";  // --out relative to w: the check that nothing appears covers it
  expect_refused(V{"train"} + kSyn + V{"--d-model", "-16", "--out", out}, "model sizes must be positive", w);
  expect_refused(V{"train", "--task", "reverse", "--seq-len", "-3", "--out", out}, "sizes must be positive", w);
  expect_refused(V{"train", "--task", "reverse", "--train-size", "0", "--out", out}, "sizes must be positive", w);
  expect_refused(V{"train", "--task", "swap", "--seq-len", "7", "--out", out}, "must be even", w);
  expect_refused(V{"train", "--task", "reverse", "--train-size", "4", "--batch", "8", "--out", out},
                 "batch 8 is larger than the training set of 4", w);
  expect_refused(V{"train", "--task", "reverse", "--epochs", "-1", "--out", out}, "must be positive", w);
  expect_refused(V{"train", "--task", "reverse", "--epochs", "9223372036854775807", "--out", out}, "is too many", w);
  expect_refused(V{"train"} + kSyn + V{"--dropout", "1.5", "--out", out}, "--dropout must be in [0, 1)", w);
  expect_refused(V{"train"} + kSyn + V{"--lr", "nan", "--out", out}, "--lr must be positive", w);
  expect_refused(V{"train"} + kSyn + V{"--lr", "inf", "--out", out}, "--lr must be a positive number", w);
  expect_refused(V{"train"} + kSyn + V{"--clip", "-1", "--out", out}, "--clip must be >= 0", w);
  expect_refused(V{"train"} + kSyn + V{"--weight-decay", "-1", "--out", out}, "--weight-decay must be >= 0", w);
  expect_refused(V{"train"} + kSyn + V{"--eval-every", "-1", "--out", out}, "must be >= 0", w);
  // A model too large for memory is refused before its run directory is made.
  expect_refused(V{"train", "--task", "lm", "--data", F.corpus, "--context", "16", "--d-model", "1000000000",
                   "--heads", "1", "--layers", "1", "--out", out},
                 "out of memory", w);
  // A context longer than the corpus can hold.
  expect_refused(V{"train", "--task", "lm", "--data", F.corpus, "--context", "100000", "--out", out},
                 "context 100000 needs at least 100001 bytes in each split", w);
  expect_refused(V{"train"} + kSyn + V{"--out", out}, "QKVLAB_THREADS", w, "QKVLAB_THREADS=0");
  CHECK(!std::filesystem::exists(work.file(out)));
}

TEST_CASE("bad variants, tasks and data for train", "[reliability][cli]") {
  Fixture& F = fixture();
  TempDir work("bad_variants");
  const std::string w = work.path, out = "run";
  expect_refused(V{"train"} + kSyn + V{"--variant", "gqa:0", "--out", out}, "unknown variant 'gqa:0'", w);
  expect_refused(V{"train"} + kSyn + V{"--variant", "", "--out", out}, "unknown variant ''", w);
  // (the parser drops white space, so "q\nk" would be "qk": a valid name)
  expect_refused(V{"train"} + kSyn + V{"--variant", "no\nsuch", "--out", out}, "unknown variant 'no\\nsuch'", w);
  expect_refused(V{"train"} + kSyn + V{"--variant", "\xff\xfe", "--out", out}, "unknown variant", w);
  expect_refused(V{"train"} + kSyn + V{"--variant", "qk", "--kv-heads", "1", "--out", out},
                 "kv_heads must equal heads", w);
  expect_refused(V{"train"} + kSyn + V{"--variant", "gqa:2", "--kv-heads", "1", "--out", out},
                 "--kv-heads 1 contradicts variant gqa:2", w);
  const std::string empty = work.file("empty.txt");
  write_file(empty, "");
  expect_refused(V{"train"} + kLM + V{"--data", empty, "--out", out}, "is empty", w);
  expect_refused(V{"train", "--task", "fmnist", "--data-dir", work.file("nowhere"), "--out", out},
                 "Fashion-MNIST files not found", w);
  // IDX files that are not IDX files: the message names the file.
  const std::string fm = work.sub("fm");
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"})
    write_file(fm + "/" + f, "not an idx file at all");
  expect_refused(V{"train", "--task", "fmnist", "--data-dir", fm, "--steps", "1", "--out", out}, "idx: ", w);
  expect_refused(V{"train", "--task", "lm", "--preset", "huge", "--data", F.corpus, "--out", out}, "huge", w);
  CHECK(!std::filesystem::exists(work.file(out)));
}

TEST_CASE("a corpus with zero bytes and non-ASCII bytes trains: every byte is a token", "[reliability][cli]") {
  TempDir work("odd_corpus");
  std::string text = english_like_text(3000, 9);
  for (size_t i = 0; i < text.size(); i += 37) text[i] = '\0';
  for (size_t i = 5; i < text.size(); i += 53) text.replace(i, 2, "\xc3\xa9");  // é in UTF-8
  text[100] = char(0xff);
  write_file(work.file("odd.txt"), text);
  CliResult r = run_cli(V{"train"} + kLM + V{"--data", "odd.txt", "--steps", "3", "--out", "run", "--json"}, work.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  // The vocabulary holds the zero byte and the three bytes above 0x7f; eval reads the same file back.
  nlohmann::json cfg = nlohmann::json::parse(load_safetensors(work.file("run/model.safetensors")).metadata.at("config"));
  std::vector<int> vocab = cfg.at("vocab").get<std::vector<int>>();
  for (int b : {0x00, 0xa9, 0xc3, 0xff}) CHECK(std::find(vocab.begin(), vocab.end(), b) != vocab.end());
  CliResult e = run_cli(V{"eval", "--ckpt", "run", "--data", "odd.txt", "--json"}, work.path);
  INFO(e.err);
  CHECK(e.status == 0);
}

TEST_CASE("bad run directories: a file, an unwritable place, a directory as a file", "[reliability][cli]") {
  Fixture& F = fixture();
  TempDir work("bad_dirs");
  const std::string w = work.path;
  write_file(work.file("taken"), "a file");
  expect_refused(V{"train"} + kSyn + V{"--out", "taken"}, "taken is not a folder", w);
  expect_refused(V{"train"} + kSyn + V{"--out", "/proc/qkvlab_cannot_be_here"}, "cannot create folder", w);
  expect_refused(V{"train"} + kSyn + V{"--out", "taken/sub"}, "cannot create folder taken/sub", w);
  expect_refused(V{"attention", "--ckpt", F.syn, "--out", "taken"}, "taken is not a folder", w);
  // A folder is a corpus (its text files, docs/DESIGN.md section 7); one without any is refused.
  expect_refused(V{"eval", "--ckpt", F.lm, "--data", work.sub("no_text")}, "holds no text files", w);
  if (::geteuid() != 0) {  // root writes anywhere
    const std::string ro = work.sub("readonly");
    ::chmod(ro.c_str(), 0555);
    expect_refused(V{"train"} + kSyn + V{"--out", ro}, "not writable", w);
    ::chmod(ro.c_str(), 0755);
  }
}

TEST_CASE("broken checkpoints: empty, truncated, not safetensors, lying config, wrong variant", "[reliability][cli]") {
  Fixture& F = fixture();
  TempDir work("bad_ckpt");
  const std::string w = work.path;
  const std::string good = slurp_file(F.lm + "/model.safetensors");
  write_file(work.file("zero.safetensors"), "");
  expect_refused(V{"eval", "--ckpt", "zero.safetensors", "--data", F.corpus}, "shorter than the 8-byte header", w);
  write_file(work.file("seven.safetensors"), good.substr(0, 7));
  expect_refused(V{"eval", "--ckpt", "seven.safetensors", "--data", F.corpus}, "shorter than the 8-byte header", w);
  write_file(work.file("cut.safetensors"), good.substr(0, good.size() - 1));
  expect_refused(V{"eval", "--ckpt", "cut.safetensors", "--data", F.corpus}, "past the end of the data section", w);
  write_file(work.file("long.safetensors"), good + "x");
  expect_refused(V{"eval", "--ckpt", "long.safetensors", "--data", F.corpus}, "trailing bytes", w);
  std::string zeroed = good;
  for (int i = 0; i < 8; ++i) zeroed[size_t(i)] = '\0';
  write_file(work.file("zeroed.safetensors"), zeroed);
  expect_refused(V{"eval", "--ckpt", "zeroed.safetensors", "--data", F.corpus}, "header is not valid JSON", w);
  expect_refused(V{"eval", "--ckpt", F.lm + "/metrics.jsonl", "--data", F.corpus}, "not a safetensors file?", w);
  expect_refused(V{"eval", "--ckpt", F.lm + "/optimizer.safetensors", "--data", F.corpus}, "no __metadata__ config",
                 w);
  // A config that names another variant than the tensors hold: the weights of qkv under the name of q = k.
  expect_refused(V{"eval", "--ckpt", F.with_config("qk.safetensors", "variant", "qk"), "--data", F.corpus},
                 "qk.safetensors", w);
  expect_refused(V{"eval", "--ckpt", F.with_config("nosuch.safetensors", "variant", "nosuch"), "--data", F.corpus},
                 "unknown variant 'nosuch'", w);
  expect_refused(V{"generate", "--ckpt", F.with_config("ctx.safetensors", "context", -4)}, "ctx.safetensors", w);
  // Resuming with a longer context than the run's model.
  expect_refused(V{"train", "--resume", "--task", "lm", "--context", "32", "--d-model", "16", "--heads", "4",
                   "--layers", "1", "--batch", "8", "--data", F.corpus, "--steps", "6", "--out", F.lm},
                 "different model", w);
}

TEST_CASE("bad generate, eval, study and cache requests", "[reliability][cli]") {
  Fixture& F = fixture();
  TempDir work("bad_requests");
  const std::string w = work.path;
  const std::string long_prompt = english_like_text(40, 3).substr(0, 40);
  expect_refused(V{"generate", "--ckpt", F.lm, "--prompt", long_prompt}, "the prompt has 40 tokens but the model's "
                                                                         "context is 16", w);
  expect_refused(V{"generate", "--ckpt", F.lm, "--prompt", ""}, "the prompt is empty", w);
  expect_refused(V{"generate", "--ckpt", F.lm, "--tokens", "-1"}, "--tokens must be >= 0", w);
  expect_refused(V{"generate", "--ckpt", F.lm, "--top-k", "-1"}, "--top-k must be >= 0", w);
  expect_refused(V{"generate", "--ckpt", F.lm, "--temperature", "nan"}, "temperature must be >= 0", w);
  expect_refused(V{"generate", "--ckpt", F.lm, "--prompt", std::string("a\0b", 3).substr(0, 1) + "\x01"},
                 "byte 0x01", w);
  std::string zeros = slurp_file(F.corpus).substr(0, 200);  // bytes the model knows, but one
  zeros[50] = '\0';
  write_file(work.file("zeros.txt"), zeros);
  expect_refused(V{"eval", "--ckpt", F.lm, "--data", "zeros.txt"}, "byte 0x00 ('\\0') at position 50", w);
  expect_refused(V{"eval", "--ckpt", F.lm, "--data", F.corpus, "--batch", "0"}, "batch", w);
  expect_refused(V{"study", "--task", "reverse", "--variants", "qkv,,kv", "--steps", "2"}, "empty name", w);
  expect_refused(V{"study", "--task", "reverse", "--variants", "qkv", "--seeds", "0"}, "--seeds must be 1..100", w);
  expect_refused(V{"cache", "--preset", "300M", "--context", "-1"}, "--context", w);
  expect_refused(V{"attention", "--ckpt", F.syn, "--prompt", "x\ny"}, "x\\ny", w);
}
