// The qkvlab program end to end: the tests run the real binary (build/<mode>/qkvlab, found beside this test
// binary) as a child process and read its exit status, stdout and stderr.
//   - train on a synthetic task and on a text file, eval (checkpoint and --data), generate with and without the
//     KV cache, cache --preset 300M, gradcheck; every --json output parses;
//   - every bad flag, file or checkpoint: exit status 2 and exactly one line "qkvlab: error: ..." on stderr;
//   - Ctrl-C during train: a checkpoint, exit status 130, and --resume finishes it bit-identically to a straight run.
#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include "tests/cli_child.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/data.h"
#include "tensor/parallel.h"

extern char** environ;

using namespace qkvlab;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using V = std::vector<std::string>;

namespace {

// A temporary folder for this file's tests (tests/test_util.h).
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("cli") {}
};

// The child-process helpers are shared with tests/reliability (tests/cli_child.h).
std::string slurp(const std::string& path) { return testing::slurp_file(path); }
void write(const std::string& path, const std::string& bytes) { testing::write_file(path, bytes); }
std::string qkvlab_binary() { return testing::qkvlab_program(); }
// A bool, so that a failure prints one line rather than two files.
bool files_equal(const std::string& a, const std::string& b) {
  std::string x = slurp(a), y = slurp(b);
  return !x.empty() && x == y;
}
using Child = testing::CliChild;
using Result = testing::CliResult;
Child spawn(const std::vector<std::string>& args, const std::string& cwd, const std::string& io_prefix) {
  return testing::spawn_cli(args, cwd, io_prefix);
}
Result finish(const Child& c) { return testing::finish_cli(c); }

// Runs qkvlab to the end. The child's files live in `dir` (also its working directory: a default --out lands there).
Result run_qkvlab(const std::vector<std::string>& args, const std::string& dir) {
  static int n = 0;
  return finish(spawn(args, dir, dir + "/io" + std::to_string(n++)));
}

std::string joined(const std::vector<std::string>& args) {
  std::string s = "qkvlab";
  for (auto& a : args) s += " '" + a + "'";
  return s;
}

json parse_json(const std::string& text) {
  INFO("stdout: " << text);
  json j;
  REQUIRE_NOTHROW(j = json::parse(text));
  return j;
}


const std::vector<std::string> kTinySynthetic{"--task",   "reverse", "--seq-len", "8",   "--train-size", "200",
                                              "--test-size", "50",   "--d-model", "16",  "--heads",      "2",
                                              "--layers", "1",       "--batch",   "16",  "--threads",    "1"};
const std::vector<std::string> kTinyLM{"--task",   "lm", "--context", "16", "--d-model", "16", "--heads", "4",
                                       "--layers", "1",  "--batch",   "8",  "--threads", "1"};
std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Two small runs made once for all the tests below: a synthetic checkpoint and an LM checkpoint.
struct Runs {
  TempDir tmp;
  std::string corpus, synthetic_dir, lm_dir;
  json synthetic_train, lm_train;
  Runs() {
    corpus = tmp.file("corpus.txt");
    write(corpus, testing::english_like_text(5000, 7));
    synthetic_dir = tmp.file("syn");
    lm_dir = tmp.file("lm");
    Result s = run_qkvlab(V{"train"} + kTinySynthetic + V{"--steps", "30", "--out", synthetic_dir, "--json"},
                      tmp.path);
    INFO(s.err);
    REQUIRE(s.status == 0);
    synthetic_train = parse_json(s.out);
    Result l = run_qkvlab(V{"train"} + kTinyLM + V{"--data", corpus, "--steps", "40", "--out", lm_dir, "--json"},
                      tmp.path);
    INFO(l.err);
    REQUIRE(l.status == 0);
    lm_train = parse_json(l.out);
  }
};
Runs& runs() {
  static Runs r;
  return r;
}

// Exit status 2, exactly one line on stderr, starting "qkvlab: error:" and saying `what`.
void expect_error(const std::vector<std::string>& args, const std::string& what, const std::string& dir) {
  Result r = run_qkvlab(args, dir);
  INFO(joined(args) << "\nstatus " << r.status << "\nstderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(!r.err.empty());
  CHECK(r.err.back() == '\n');
  CHECK_THAT(r.err, StartsWith("qkvlab: error: "));
  CHECK_THAT(r.err, Contains(what));
}

}  // namespace

TEST_CASE("cli: train on a synthetic task writes a checkpoint that eval scores the same way", "[cli]") {
  Runs& R = runs();
  const json& t = R.synthetic_train;
  CHECK(t["variant"] == "qkv");
  CHECK(t["task"] == "reverse");
  CHECK(t["steps"] == 30);
  CHECK(t["interrupted"] == false);
  CHECK(t["parameters"].get<int64_t>() > 0);
  const double loss = t["eval_loss"].get<double>(), acc = t["eval_acc"].get<double>();
  CHECK(std::isfinite(loss));
  CHECK(acc >= 0.0);
  CHECK(acc <= 1.0);
  CHECK(t["eval_ppl"].get<double>() == Approx(std::exp(loss)).epsilon(1e-12));
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "metrics.jsonl"})
    CHECK(std::filesystem::exists(R.synthetic_dir + "/" + f));
  // metrics.jsonl: one JSON object per line, the last training line at step 30, the final eval after it.
  std::ifstream metrics(R.synthetic_dir + "/metrics.jsonl");
  int64_t last_loss_step = -1, eval_lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    json j = parse_json(line);
    if (j.contains("loss")) last_loss_step = j["step"].get<int64_t>();
    if (j.contains("eval_loss")) {
      ++eval_lines;
      CHECK(j["eval_loss"].get<double>() == loss);
    }
  }
  CHECK(last_loss_step == 30);
  CHECK(eval_lines == 1);

  // eval regenerates the test set from --seed: its first 50 sequences are the 50 the run was scored on.
  Result e = run_qkvlab(V{"eval", "--ckpt", R.synthetic_dir, "--max-examples", "50", "--threads", "1", "--json"}, R.tmp.path);
  INFO(e.err);
  REQUIRE(e.status == 0);
  json j = parse_json(e.out);
  CHECK(j["examples"] == 50);
  CHECK(j["task"] == "reverse");
  CHECK(j["loss"].get<double>() == Approx(loss).epsilon(1e-6));
  CHECK(j["accuracy"].get<double>() == Approx(acc).epsilon(1e-9));
  CHECK(j["perplexity"].get<double>() == Approx(std::exp(j["loss"].get<double>())).epsilon(1e-12));
  // The file path works as well as the directory.
  Result e2 = run_qkvlab(V{"eval", "--ckpt", R.synthetic_dir + "/model.safetensors", "--max-examples", "50", "--json"},
                     R.tmp.path);
  REQUIRE(e2.status == 0);
  CHECK(parse_json(e2.out)["loss"] == j["loss"]);
}

TEST_CASE("cli: train an LM on a text file, eval --data counts windows and ppl == exp(loss)", "[cli]") {
  Runs& R = runs();
  const json& t = R.lm_train;
  CHECK(t["task"] == "lm");
  CHECK(t["steps"] == 40);
  CHECK(t["eval_ppl"].get<double>() == Approx(std::exp(t["eval_loss"].get<double>())).epsilon(1e-12));
  // 40 steps of a byte LM on English-like text: below the loss of a uniform guess over its vocabulary.
  ModelConfig cfg = read_config(R.lm_dir);
  CHECK(cfg.context == 16);
  CHECK(t["eval_loss"].get<double>() < std::log(double(cfg.vocab_size)));

  // A known file: 5 windows of 17 bytes and a 3-byte tail that is dropped.
  const std::string text = slurp(R.corpus);
  const std::string known = R.tmp.file("known.txt");
  write(known, text.substr(100, 5 * 17 + 3));
  Result e = run_qkvlab(V{"eval", "--ckpt", R.lm_dir, "--data", known, "--threads", "1", "--json"}, R.tmp.path);
  INFO(e.err);
  REQUIRE(e.status == 0);
  json j = parse_json(e.out);
  CHECK(j["examples"] == 5);
  const double loss = j["loss"].get<double>();
  CHECK(std::isfinite(loss));
  CHECK(j["perplexity"].get<double>() == Approx(std::exp(loss)).epsilon(1e-12));

  // The same score computed here, from the checkpoint, with the library (docs/DESIGN.md section 7: consecutive
  // windows).
  {
    int saved = num_threads();
    set_num_threads(1);
    auto model = load_model(R.lm_dir);
    ByteTokenizer tok = ByteTokenizer::from_vocab(model->config().vocab);
    auto batches = eval_windows(tok.encode(slurp(known)), 16, 32);
    NoGradGuard no_grad;
    model->eval();
    double sum = 0;
    int64_t n = 0;
    for (auto& b : batches) {
      sum += model_loss(*model, b.x, b.y).loss.item() * double(b.y.numel());
      n += b.y.numel();
    }
    set_num_threads(saved);
    CHECK(n == 5 * 16);
    CHECK(loss == Approx(sum / double(n)).epsilon(1e-6));
  }

  // The human output says the same.
  Result h = run_qkvlab(V{"eval", "--ckpt", R.lm_dir, "--data", known}, R.tmp.path);
  REQUIRE(h.status == 0);
  CHECK_THAT(h.out, Contains("5 windows of 17 bytes"));
  std::smatch m;
  REQUIRE(std::regex_search(h.out, m, std::regex("loss ([0-9.]+)  perplexity ([0-9.]+)")));
  CHECK(std::stod(m[1]) == Approx(loss).margin(6e-5));
  CHECK(std::stod(m[2]) == Approx(std::exp(loss)).margin(6e-5));

  // --max-examples and the whole corpus
  Result two = run_qkvlab(V{"eval", "--ckpt", R.lm_dir, "--data", known, "--max-examples", "2", "--json"}, R.tmp.path);
  REQUIRE(two.status == 0);
  CHECK(parse_json(two.out)["examples"] == 2);
  Result all = run_qkvlab(V{"eval", "--ckpt", R.lm_dir, "--data", R.corpus, "--json"}, R.tmp.path);
  REQUIRE(all.status == 0);
  CHECK(parse_json(all.out)["examples"] == int64_t(text.size()) / 17);
}

TEST_CASE("cli: generate prints the same text with and without the KV cache", "[cli]") {
  Runs& R = runs();
  const std::vector<std::string> base{"generate", "--ckpt", R.lm_dir, "--prompt", "The old ", "--tokens", "7"};
  for (const std::vector<std::string>& sampling :
       {V{"--temperature", "0"}, V{"--temperature", "1", "--seed", "3"}}) {
    INFO(joined(sampling));
    Result cached = run_qkvlab(base + sampling, R.tmp.path);
    Result plain = run_qkvlab(base + sampling + V{"--no-cache"}, R.tmp.path);
    INFO(cached.err << plain.err);
    REQUIRE(cached.status == 0);
    REQUIRE(plain.status == 0);
    CHECK_THAT(cached.out, StartsWith("The old "));
    CHECK(cached.out.size() == 8 + 7 + 1);  // prompt, 7 bytes, newline
    CHECK(cached.out == plain.out);
    CHECK_THAT(cached.err, Contains("KV cache on"));
    CHECK_THAT(plain.err, Contains("KV cache off"));

    Result jc = run_qkvlab(base + sampling + V{"--json"}, R.tmp.path);
    Result jp = run_qkvlab(base + sampling + V{"--json", "--no-cache"}, R.tmp.path);
    REQUIRE(jc.status == 0);
    REQUIRE(jp.status == 0);
    json a = parse_json(jc.out), b = parse_json(jp.out);
    CHECK(a["text"] == b["text"]);
    CHECK(a["tokens"] == 7);
    CHECK("The old " + a["text"].get<std::string>() + "\n" == cached.out);
    // 1 layer x 2 tensors (K, V) x 4 KV heads x head dim 4 x 4 bytes x 14 positions (8 prompt + 7 new - 1)
    CHECK(a["cache_bytes"] == 1 * 2 * 4 * 4 * 4 * 14);
    CHECK(b["cache_bytes"] == 0);
  }
}

TEST_CASE("cli: cache --preset 300M and gradcheck --op add print JSON with the paper's numbers", "[cli]") {
  TempDir tmp;
  Result c = run_qkvlab(V{"cache", "--preset", "300M", "--json"}, tmp.path);
  INFO(c.err);
  REQUIRE(c.status == 0);
  json j = parse_json(c.out);
  std::map<std::string, json> by_id;
  for (auto& v : j["variants"]) by_id[v["variant"].get<std::string>()] = v;
  REQUIRE(by_id.count("qkv"));
  CHECK(by_id["qkv"]["parameters"] == 305534976);
  CHECK(by_id["qkv"]["kv_bytes_per_token"] == 81920);  // 80 KB: 20 layers x 2 x 16 heads x 64 x 2 bytes
  REQUIRE(by_id.count("kv"));
  CHECK(by_id["kv"]["kv_bytes_per_token"] == 40960);
  CHECK(by_id["kv"]["reduction_percent"] == 50.0);

  Result g = run_qkvlab(V{"gradcheck", "--op", "add", "--json"}, tmp.path);
  INFO(g.err);
  REQUIRE(g.status == 0);
  json rows = parse_json(g.out);
  REQUIRE(rows.is_array());
  REQUIRE(!rows.empty());
  int add_rows = 0;
  for (auto& r : rows) {
    add_rows += r["op"] == "add";
    CHECK(r["ok"] == true);
    CHECK(r["max_rel_error"].get<double>() < 1e-6);
  }
  CHECK(add_rows >= 1);
}

TEST_CASE("cli: every bad flag, file or checkpoint exits 2 with one line on stderr", "[cli]") {
  Runs& R = runs();
  TempDir tmp;
  const std::string out = tmp.file("out");
  const auto syn = kTinySynthetic + V{"--steps", "2", "--out", out};
  const V syn_no_heads{"--task", "reverse", "--d-model", "16", "--steps", "2", "--threads", "1", "--out", out};
  const std::string junk = tmp.file("junk.safetensors"), cut = tmp.file("cut.safetensors");
  {
    Generator g(1);
    std::string bytes(2000, '\0');
    for (char& ch : bytes) ch = char(g.randint(0, 256));
    write(junk, bytes);
    std::string good = slurp(R.lm_dir + "/model.safetensors");
    write(cut, good.substr(0, good.size() / 2));
  }
  const std::string empty_dir = tmp.sub("empty_run");
  const std::string short_text = tmp.file("short.txt");
  write(short_text, slurp(R.corpus).substr(0, 10));

  expect_error(V{"train", "--variant", "foo"} + syn, "unknown variant 'foo'", tmp.path);
  expect_error(V{"train", "--heads", "3"} + syn_no_heads, "heads (3) must divide d_model (16)", tmp.path);
  expect_error(V{"train", "--heads", "4", "--kv-heads", "3"} + syn_no_heads, "3 KV heads do not divide 4 heads", tmp.path);
  expect_error(V{"train", "--variant", "gqa:3", "--heads", "4"} + syn_no_heads, "3 KV heads do not divide 4 heads", tmp.path);
  expect_error(V{"train", "--task", "nosuch", "--out", out}, "unknown task 'nosuch'", tmp.path);
  {  // no --data and no default corpus (docs/DESIGN.md section 7): the package to install, or --data FILE
    const char* old = std::getenv("QKVLAB_CORPUS_DIR");
    const std::string saved = old != nullptr ? old : "";
    ::setenv("QKVLAB_CORPUS_DIR", (tmp.path + "/no-corpus-here").c_str(), 1);
    expect_error(V{"train", "--task", "lm", "--out", out}, "apt-get install fortunes", tmp.path);
    if (old != nullptr) ::setenv("QKVLAB_CORPUS_DIR", saved.c_str(), 1);
    else ::unsetenv("QKVLAB_CORPUS_DIR");
  }
  expect_error(V{"train", "--task", "lm", "--data", tmp.file("missing.txt"), "--out", out}, tmp.file("missing.txt"),
               tmp.path);
  // A folder is a corpus of its text files (docs/DESIGN.md section 7); one without any is refused.
  expect_error(V{"train", "--task", "lm", "--data", tmp.sub("no_text"), "--out", out}, "holds no text files", tmp.path);
  expect_error(V{"train", "--bogus"} + syn, "--bogus", tmp.path);
  expect_error(V{"train", "--steps", "abc"}, "abc", tmp.path);
  expect_error(V{"train", "--steps", "-5"} + syn, "--steps", tmp.path);
  expect_error(V{"train", "--threads", "0"} + syn, "--threads", tmp.path);
  expect_error(V{"train", "--lr", "-1"} + syn, "--lr must be positive", tmp.path);
  expect_error(V{"train", "--min-lr-ratio", "-2"} + syn, "--min-lr-ratio must be in [0, 1]", tmp.path);
  expect_error(V{"train", "--save-every", "-5"} + syn, "--save-every", tmp.path);
  expect_error(V{"train", "--warmup", "1.5"} + syn, "--warmup must be in [0, 1]", tmp.path);
  expect_error(V{"train", "--steps", "5", "--epochs", "1"} + kTinySynthetic + V{"--out", out}, "not both", tmp.path);
  expect_error(V{"train", "--resume"} + syn, "no run directory", tmp.path);
  CHECK(!std::filesystem::exists(out));  // a failed --resume leaves no empty run directory behind
  expect_error(V{"train", "--resume"} + kTinySynthetic + V{"--steps", "2", "--out", empty_dir},
               "no checkpoint in " + empty_dir, tmp.path);
  // resuming a finished run, and resuming with another model
  expect_error(V{"train", "--resume"} + kTinySynthetic + V{"--steps", "30", "--out", R.synthetic_dir},
               "already did 30 of 30 steps", tmp.path);
  expect_error(V{"train", "--resume", "--variant", "kv"} + kTinySynthetic +
                   V{"--steps", "40", "--out", R.synthetic_dir},
               "is a different model", tmp.path);

  expect_error(V{"eval", "--ckpt", junk}, junk, tmp.path);
  expect_error(V{"eval", "--ckpt", cut, "--data", R.corpus}, cut, tmp.path);
  expect_error(V{"eval", "--ckpt", tmp.file("nowhere")}, "does not exist", tmp.path);
  expect_error(V{"eval", "--ckpt", empty_dir}, "without model.safetensors", tmp.path);
  expect_error(V{"eval"}, "--ckpt is required", tmp.path);
  expect_error(V{"eval", "--ckpt", R.synthetic_dir, "--max-examples", "-3"}, "--max-examples must be >= 0", tmp.path);
  {  // without --data an LM checkpoint is scored on the corpus its config records ("data", docs/DESIGN.md section 6)
    Result d = run_qkvlab(V{"eval", "--ckpt", R.lm_dir, "--max-examples", "4"}, tmp.path);
    INFO(d.err);
    CHECK(d.status == 0);
    CHECK(d.out.find(R.corpus) != std::string::npos);
  }
  expect_error(V{"eval", "--ckpt", R.lm_dir, "--data", short_text}, "too few for one window", tmp.path);
  expect_error(V{"eval", "--ckpt", R.lm_dir, "--data", tmp.file("missing.txt")}, tmp.file("missing.txt"), tmp.path);
  expect_error(V{"eval", "--ckpt", R.synthetic_dir, "--data", R.corpus}, "--data is for LM checkpoints", tmp.path);
  if (::geteuid() != 0) {  // root reads files whatever their mode
    const std::string locked = tmp.file("locked.safetensors");
    std::filesystem::copy_file(R.lm_dir + "/model.safetensors", locked);
    ::chmod(locked.c_str(), 0);
    expect_error(V{"eval", "--ckpt", locked, "--data", R.corpus}, locked, tmp.path);
  }

  expect_error(V{"generate", "--ckpt", R.lm_dir, "--prompt", "caf\xc3\xa9"}, "not in the vocabulary", tmp.path);
  expect_error(V{"generate", "--ckpt", R.lm_dir, "--temperature", "-1"}, "temperature", tmp.path);
  expect_error(V{"generate", "--ckpt", R.synthetic_dir}, "generate needs an LM", tmp.path);
  expect_error(V{"generate", "--ckpt", junk}, junk, tmp.path);

  expect_error(V{"frobnicate"}, "unknown command 'frobnicate'", tmp.path);
  expect_error(V{"frobnicate", "--json"}, "unknown command 'frobnicate'", tmp.path);
  expect_error(V{}, "subcommand", tmp.path);
  expect_error(V{"gradcheck", "--op", "nosuchop"}, "nosuchop", tmp.path);
  expect_error(V{"cache", "--preset", "7T"}, "7T", tmp.path);
}

TEST_CASE("cli: Ctrl-C saves a checkpoint and exits 130; --resume finishes the run exactly", "[cli]") {
  TempDir tmp;
  // About a second of training in the release build (the sanitized debug build is ~40x slower per step).
  const bool debug_build = qkvlab_binary().find("/debug/") != std::string::npos;
  const int64_t total = debug_build ? 120 : 800;
  const std::string steps = std::to_string(total);
  const std::vector<std::string> flags{"--task",    "reverse", "--seq-len", "8",   "--train-size", "256",
                                       "--test-size", "32",    "--d-model", "16",  "--heads",      "2",
                                       "--layers",  "1",       "--batch",   "16",  "--steps",      steps,
                                       "--threads", "1",       "--seed",    "5"};
  const std::string dir = tmp.file("run"), straight_dir = tmp.file("straight");

  Child c = spawn(V{"train"} + flags + V{"--out", dir}, tmp.path, tmp.file("interrupted"));
  // Wait for the first progress line (the SIGINT handler is installed by then), then interrupt.
  auto t0 = std::chrono::steady_clock::now();
  while (slurp(c.err_path).find("step ") == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(::kill(c.pid, SIGINT) == 0);
  Result r = finish(c);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 130);
  CHECK_THAT(r.err, !Contains("error"));
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("stopped at step ([0-9]+); checkpoint saved in")));
  const int64_t stopped = std::stoll(m[1]);
  CHECK(stopped > 0);
  REQUIRE(stopped < total);  // if not, the signal came after the last step and this test proves nothing
  auto model = load_model(dir);
  AdamW opt(make_param_groups(*model, 0.0), 1e-3);
  CHECK(load_training_state(dir + "/optimizer.safetensors", opt).step == stopped);

  Result resumed = run_qkvlab(V{"train", "--resume", "--json"} + flags + V{"--out", dir}, tmp.path);
  INFO("resume stderr: " << resumed.err);
  REQUIRE(resumed.status == 0);
  json j = parse_json(resumed.out);
  CHECK(j["steps"] == total);
  CHECK(j["interrupted"] == false);
  // metrics.jsonl runs from the start to the last step, in order, without a repeat.
  {
    std::ifstream metrics(dir + "/metrics.jsonl");
    int64_t prev = 0;
    bool ordered = true;
    for (std::string line; std::getline(metrics, line);) {
      json l = parse_json(line);
      if (!l.contains("loss")) continue;
      ordered = ordered && l["step"].get<int64_t>() > prev;
      prev = l["step"].get<int64_t>();
    }
    CHECK(ordered);
    CHECK(prev == total);
  }

  // The same run without the interruption ends with the same bytes.
  Result straight = run_qkvlab(V{"train", "--json"} + flags + V{"--out", straight_dir}, tmp.path);
  REQUIRE(straight.status == 0);
  json s = parse_json(straight.out);
  CHECK(s["eval_loss"] == j["eval_loss"]);
  CHECK(files_equal(straight_dir + "/model.safetensors", dir + "/model.safetensors"));
  CHECK(files_equal(straight_dir + "/optimizer.safetensors", dir + "/optimizer.safetensors"));
}

TEST_CASE("cli: a miniature study trains two variants over two seeds and writes every result file", "[cli]") {
  TempDir tmp;
  const std::string out = tmp.file("study");
  // Q=K=V against QKV on REVERSE: tiny, a few steps; the numbers are not the point, the files and the table are.
  // Q=K=V comes first, so the KV reduction must still be measured against QKV, not against the first variant.
  Result r = run_qkvlab(V{"study", "--variants", "single,qkv", "--seeds", "2", "--steps", "6", "--out", out} +
                            kTinySynthetic,
                        tmp.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  // The markdown table: a header naming the columns, one row per variant with its paper name.
  CHECK_THAT(r.out, Contains("| variant"));
  CHECK_THAT(r.out, Contains("KV cache / token"));
  CHECK_THAT(r.out, Contains("| QKV"));
  CHECK_THAT(r.out, Contains("| Q=K=V"));
  // The progress lines name each variant and seed as it runs.
  CHECK_THAT(r.out + r.err, Contains("[2/2] QKV seed 1"));

  std::ifstream jf(out + "/results.json");
  REQUIRE(jf);
  json j = json::parse(jf);
  CHECK(j["task"] == "reverse");
  CHECK(j["seeds"] == 2);
  REQUIRE(j["variants"].size() == 2);
  const json& single = j["variants"][0];
  const json& qkv = j["variants"][1];
  CHECK(qkv["variant"] == "qkv");
  CHECK(single["paper_name"] == "Q=K=V");
  // KV cache per token in float32: layers x cached tensors x heads x head dim x 4 bytes (d 16, 1 layer).
  CHECK(qkv["kv_bytes_per_token"] == 1 * 2 * 16 * 4);
  CHECK(single["kv_bytes_per_token"] == 1 * 1 * 16 * 4);
  CHECK(single["kv_reduction_percent"].get<double>() == 50.0);
  CHECK(qkv["kv_reduction_percent"].get<double>() == 0.0);
  // One projection instead of three: two d x d weight matrices and their biases fewer.
  CHECK(qkv["parameters"].get<int64_t>() - single["parameters"].get<int64_t>() == 2 * (16 * 16 + 16));
  for (const json& v : j["variants"]) {
    REQUIRE(v["metric"].size() == 2);
    REQUIRE(v["train_seconds"].size() == 2);
    for (const json& m : v["metric"]) {
      CHECK(m.get<double>() >= 0.0);
      CHECK(m.get<double>() <= 1.0);
    }
    double m0 = v["metric"][0].get<double>(), m1 = v["metric"][1].get<double>();
    CHECK(v["metric_mean"].get<double>() == Approx((m0 + m1) / 2));
  }
  // The paper's symmetry claim, read off the saved maps: Q=K=V scores are symmetric, QKV scores are not.
  CHECK(single["max_score_asymmetry"].get<double>() == 0.0);
  CHECK(qkv["max_score_asymmetry"].get<double>() > 0.0);

  // results.csv: the header and one row per variant, in the same order.
  std::ifstream csv(out + "/results.csv");
  std::vector<std::string> lines;
  for (std::string line; std::getline(csv, line);) lines.push_back(line);
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], StartsWith("variant,paper_name,parameters,kv_bytes_per_token"));
  CHECK_THAT(lines[1], StartsWith("single,Q=K=V,"));
  CHECK_THAT(lines[2], StartsWith("qkv,QKV,"));

  // Per variant and seed: a checkpoint and metrics.jsonl whose last training line is step 6; maps for the first seed.
  auto is_png = [](const std::string& path) { return slurp(path).rfind("\x89PNG\r\n\x1a\n", 0) == 0; };
  for (const char* v : {"qkv", "single"}) {
    for (const char* seed : {"seed0", "seed1"}) {
      std::string dir = out + "/" + v + "/" + seed;
      INFO(dir);
      CHECK(std::filesystem::exists(dir + "/model.safetensors"));
      std::ifstream metrics(dir + "/metrics.jsonl");
      int64_t last_step = -1;
      for (std::string line; std::getline(metrics, line);) {
        json m = parse_json(line);
        if (m.contains("loss")) last_step = m["step"].get<int64_t>();
      }
      CHECK(last_step == 6);
    }
    CHECK(is_png(out + "/" + v + "/seed0/attention/layer0_head0.png"));
    CHECK(is_png(out + "/" + v + "/seed0/attention/layer0_head1.png"));
  }
  CHECK(is_png(out + "/loss_curves.png"));
}
