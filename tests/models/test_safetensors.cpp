// safetensors (models/safetensors.h): bit-exact round trips, one clear error per kind of malformed file, atomic
// writes that survive a crash mid-write, and files that NumPy reads with nothing but json + frombuffer.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "models/safetensors.h"
#include "tensor/random.h"

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {

// A temporary folder for this file's tests (tests/test_util.h).
struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("st") {}
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A hand-made file: 8-byte little-endian length, the header text as given, then `data_bytes` zero bytes.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
  std::copy(header.begin(), header.end(), b.begin() + 8);
  return b;
}

// The raw bytes of an array's values in row-major order (bit-exact comparison, NaN payloads included).
std::vector<uint8_t> value_bytes(const Array& a) {
  Array c = a.contiguous();
  const size_t n = size_t(c.numel()) * dtype_size(c.dtype());
  const uint8_t* p = static_cast<const uint8_t*>(c.storage()->data()) + c.offset() * int64_t(dtype_size(c.dtype()));
  return std::vector<uint8_t>(p, p + n);
}

void require_same(const Array& got, const Array& want) {
  REQUIRE(got.dtype() == want.dtype());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.is_contiguous());
  REQUIRE(value_bytes(got) == value_bytes(want));
}

// Expects load_safetensors(path) to throw an Error whose message names the file and contains `what`.
void require_rejects(const TempDir& dir, const std::vector<uint8_t>& bytes, const std::string& what) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  INFO("expected an error containing: " << what);
  REQUIRE_THROWS_AS(load_safetensors(path), Error);
  REQUIRE_THROWS_WITH(load_safetensors(path), Contains(what) && Contains(path));
}

std::string tensor_entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b,
                         uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

}  // namespace

TEST_CASE("safetensors: F32, F64 and I64 round-trip bit for bit, with metadata and order kept", "[safetensors]") {
  TempDir dir;
  Generator gen(7);
  Array f32 = Array::normal({3, 5}, gen);
  // Values that a lossy path would change: NaN payloads, signed zero, infinities, subnormals, extremes.
  f32.set({0, 0}, std::numeric_limits<float>::quiet_NaN());
  f32.set({0, 1}, -0.0);
  f32.set({0, 2}, std::numeric_limits<float>::infinity());
  f32.set({0, 3}, std::numeric_limits<float>::denorm_min());
  f32.set({0, 4}, std::numeric_limits<float>::max());
  Array f64 = Array::normal({2, 2, 3}, gen, 0.0, 1.0, DType::F64);
  f64.set({1, 1, 2}, std::numeric_limits<double>::denorm_min());
  f64.set({0, 0, 0}, -std::numeric_limits<double>::infinity());
  Array i64 = Array::from_vector(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), -1, 0, 1,
                                                      std::numeric_limits<int64_t>::max(), 42},
                                 {6});
  std::map<std::string, std::string> meta{{"config", "{\"d_model\": 64, \"vocab\": [10, 32]}"},
                                          {"format", "qkvlab"},
                                          {"unicode", "caf\xC3\xA9 \xE2\x9C\x93"}};
  // Deliberately not in alphabetical order: the file keeps the order given.
  std::vector<std::pair<std::string, Array>> tensors{{"z.last_name_first", f32}, {"a.double", f64}, {"m.ints", i64}};
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, tensors, meta);

  Safetensors st = load_safetensors(path);
  REQUIRE(st.tensors.size() == 3);
  for (size_t i = 0; i < tensors.size(); ++i) {
    REQUIRE(st.tensors[i].first == tensors[i].first);
    require_same(st.tensors[i].second, tensors[i].second);
  }
  REQUIRE(st.metadata == meta);
  REQUIRE(st.has("a.double"));
  REQUIRE_FALSE(st.has("nope"));
  require_same(st.get("m.ints"), i64);
  REQUIRE(std::isnan(st.get("z.last_name_first").at({0, 0})));
  REQUIRE(std::signbit(st.get("z.last_name_first").at({0, 1})));

  // The file is exactly what serialize_safetensors makes, and its data section starts 8-byte aligned.
  std::vector<uint8_t> bytes = read_bytes(path);
  REQUIRE(bytes == serialize_safetensors(tensors, meta));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[size_t(i)]) << (8 * i);
  REQUIRE(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 15 * 4 + 12 * 8 + 6 * 8);
  // No temporary file is left behind.
  REQUIRE(dir.files() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: non-contiguous arrays are written as their contiguous values", "[safetensors]") {
  TempDir dir;
  Generator gen(3);
  Array base = Array::normal({4, 6}, gen);
  Array t = base.transpose(0, 1);                 // (6,4), strides (1,6)
  Array s = base.slice(1, 1, 6, 2);               // (4,3), step 2
  Array e = Array::arange(3, DType::F64).unsqueeze(0).expand({5, 3});  // stride 0 along dim 0
  Array sel = Array::arange(24, DType::I64).view({2, 3, 4}).select(2, 1);  // (2,3) with stride (12,4)
  REQUIRE_FALSE(t.is_contiguous());
  REQUIRE_FALSE(s.is_contiguous());
  REQUIRE_FALSE(e.is_contiguous());
  REQUIRE_FALSE(sel.is_contiguous());
  const std::string path = dir.file("views.safetensors");
  save_safetensors(path, {{"t", t}, {"s", s}, {"e", e}, {"sel", sel}}, {});
  Safetensors st = load_safetensors(path);
  require_same(st.get("t"), t);
  require_same(st.get("s"), s);
  require_same(st.get("e"), e);
  require_same(st.get("sel"), sel);
  REQUIRE(st.get("sel").to_ints() == std::vector<int64_t>{1, 5, 9, 13, 17, 21});
  REQUIRE(st.metadata.empty());
}

TEST_CASE("safetensors: 0-d tensors, empty tensors and a file with no tensors", "[safetensors]") {
  TempDir dir;
  Array scalar = Array::scalar(3.5, DType::F64);
  Array step = Array::from_vector(std::vector<int64_t>{12345}, {1}).view({});
  Array empty = Array::zeros({0, 3});
  Array empty2 = Array::zeros({2, 0, 5}, DType::I64);
  const std::string path = dir.file("small.safetensors");
  save_safetensors(path, {{"empty", empty}, {"scalar", scalar}, {"empty2", empty2}, {"step", step}}, {{"k", ""}});
  Safetensors st = load_safetensors(path);
  REQUIRE(st.tensors.size() == 4);
  REQUIRE(st.tensors[0].first == "empty");  // zero-byte tensors keep their place in the order
  REQUIRE(st.tensors[2].first == "empty2");
  require_same(st.get("scalar"), scalar);
  REQUIRE(st.get("scalar").ndim() == 0);
  REQUIRE(st.get("scalar").item() == 3.5);
  require_same(st.get("step"), step);
  require_same(st.get("empty"), empty);
  require_same(st.get("empty2"), empty2);
  REQUIRE(st.metadata.at("k").empty());

  save_safetensors(path, {}, {});
  Safetensors none = load_safetensors(path);
  REQUIRE(none.tensors.empty());
  REQUIRE(none.metadata.empty());
}

TEST_CASE("safetensors: get() names the missing tensor and the file", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, {{"tok_emb.weight", Array::zeros({2, 2})}}, {});
  Safetensors st = load_safetensors(path);
  REQUIRE_THROWS_WITH(st.get("blocks.0.attn.v.weight"),
                      Contains("blocks.0.attn.v.weight") && Contains(path) && Contains("tok_emb.weight"));
}

TEST_CASE("safetensors: every kind of malformed file is refused with a message naming the file", "[safetensors]") {
  TempDir dir;
  SECTION("shorter than the 8-byte header length") { require_rejects(dir, {1, 2, 3}, "shorter than the 8-byte"); }
  SECTION("empty file") { require_rejects(dir, {}, "shorter than the 8-byte"); }
  SECTION("header length larger than the file") {
    std::vector<uint8_t> b = make_file("{}", 0);
    b[0] = 200;
    require_rejects(dir, b, "larger than the file");
  }
  SECTION("absurd header length") {
    std::vector<uint8_t> b(16, 0);
    b[4] = 1;  // 2^32 bytes
    require_rejects(dir, b, "absurd");
  }
  SECTION("header is not JSON") { require_rejects(dir, make_file("{\"a\": [1, 2", 0), "not valid JSON"); }
  SECTION("header is zero bytes") { require_rejects(dir, make_file("", 0), "not valid JSON"); }
  SECTION("header is not an object") { require_rejects(dir, make_file("[1, 2, 3]", 0), "must be a JSON object"); }
  SECTION("tensor entry is not an object") { require_rejects(dir, make_file("{\"w\": 3}", 0), "tensor 'w'"); }
  SECTION("missing fields") {
    require_rejects(dir, make_file("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4), "data_offsets");
  }
  SECTION("unknown dtype") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "Q7", "[2]", 0, 4) + "}", 4), "unknown or unsupported");
  }
  SECTION("a dtype qkvlab does not have") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "BF16", "[2]", 0, 4) + "}", 4), "\"BF16\"");
  }
  SECTION("negative size") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[2,-1]", 0, 4) + "}", 4), "negative size");
  }
  SECTION("non-integer size") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[2.5]", 0, 4) + "}", 4), "not an integer");
  }
  SECTION("shape overflows") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[4294967296,4294967296]", 0, 4) + "}", 4),
                    "overflows");
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[0,4294967296,4294967296]", 0, 0) + "}", 0),
                    "overflows");
  }
  SECTION("data_offsets do not match dtype and shape") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[3]", 0, 8) + "}", 8), "needs 12");
  }
  SECTION("data_offsets end before they begin") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F32", "[1]", 8, 4) + "}", 8), "end before");
  }
  SECTION("data_offsets malformed") {
    require_rejects(dir, make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4),
                    "two non-negative integers");
    require_rejects(dir, make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4),
                    "two non-negative integers");
  }
  SECTION("offsets outside the data section (truncated file)") {
    require_rejects(dir, make_file("{" + tensor_entry("w", "F64", "[4]", 0, 32) + "}", 16), "past the end");
  }
  SECTION("overlapping tensors") {
    require_rejects(dir,
                    make_file("{" + tensor_entry("a", "F32", "[2]", 0, 8) + "," +
                              tensor_entry("b", "F32", "[2]", 4, 12) + "}", 12),
                    "overlaps");
  }
  SECTION("a gap between tensors") {
    require_rejects(dir,
                    make_file("{" + tensor_entry("a", "F32", "[1]", 0, 4) + "," +
                              tensor_entry("b", "F32", "[1]", 8, 12) + "}", 12),
                    "belong to no tensor");
  }
  SECTION("data that no tensor covers at the end") {
    require_rejects(dir, make_file("{" + tensor_entry("a", "F32", "[1]", 0, 4) + "}", 12), "trailing bytes");
  }
  SECTION("duplicate tensor names") {
    require_rejects(dir,
                    make_file("{" + tensor_entry("w", "F32", "[1]", 0, 4) + "," +
                              tensor_entry("w", "F32", "[1]", 4, 8) + "}", 8),
                    "duplicate tensor name 'w'");
  }
  SECTION("duplicate keys inside an entry") {
    require_rejects(dir, make_file("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
                    "duplicate key 'dtype'");
  }
  SECTION("metadata values that are not strings") {
    require_rejects(dir, make_file("{\"__metadata__\": {\"step\": 12}}", 0), "must be a string");
    require_rejects(dir, make_file("{\"__metadata__\": [\"a\"]}", 0), "__metadata__ must be an object");
  }
  SECTION("absurd nesting") {
    require_rejects(dir, make_file("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", 0),
                    "deeper than");
  }
  SECTION("not a file") {
    REQUIRE_THROWS_WITH(load_safetensors(dir.path), Contains("is a directory"));
    REQUIRE_THROWS_WITH(load_safetensors(dir.file("missing.safetensors")),
                        Contains("missing.safetensors") && Contains("No such file"));
  }
}

TEST_CASE("safetensors: header padding with spaces is accepted, as the format allows", "[safetensors]") {
  TempDir dir;
  std::string header = "{" + tensor_entry("w", "I64", "[1]", 0, 8) + "}   \n ";
  std::vector<uint8_t> b = make_file(header, 0);
  int64_t v = -7;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + 8);
  write_bytes(dir.file("pad.safetensors"), b);
  REQUIRE(load_safetensors(dir.file("pad.safetensors")).get("w").to_ints() == std::vector<int64_t>{-7});
}

TEST_CASE("safetensors: the writer refuses bad input and says where", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  Array a = Array::zeros({2});
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"w", a}, {"w", a}}, {}), Contains("duplicate tensor name 'w'"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", a}}, {}), Contains("reserved"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"", a}}, {}), Contains("empty name"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"u", Array()}}, {}), Contains("undefined"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {}, {{"bad", "\xFF\xFE"}}), Contains("UTF-8"));
  REQUIRE_THROWS_WITH(save_safetensors(dir.file("no/such/dir/w.safetensors"), {{"w", a}}, {}),
                      Contains("no/such/dir/w.safetensors"));
  REQUIRE(dir.files().empty());  // nothing written, nothing left behind
}

TEST_CASE("safetensors: saving over a file replaces it atomically and leaves no temporary file",
          "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", Array::full({3}, 1.0)}}, {{"v", "1"}});
  save_safetensors(path, {{"w", Array::full({5}, 2.0)}}, {{"v", "2"}});
  Safetensors st = load_safetensors(path);
  REQUIRE(st.metadata.at("v") == "2");
  REQUIRE(st.get("w").to_vector() == std::vector<double>(5, 2.0));
  REQUIRE(dir.files() == std::vector<std::string>{"model.safetensors"});
}

TEST_CASE("safetensors: a writer killed mid-write leaves the previous file intact", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  Array old_w = Array::arange(10);
  save_safetensors(path, {{"w", old_w}}, {{"version", "old"}});
  const std::vector<uint8_t> before = read_bytes(path);

  Array big = Array::full({1000}, 9.0, DType::F64);
  std::fflush(nullptr);  // nothing buffered gets written twice by the child
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: a crash while writing the new checkpoint. save_safetensors must end the process with 77.
    ::setenv("QKVLAB_FAULT_INJECT", "kill-mid-write", 1);
    try {
      save_safetensors(path, {{"w", big}, {"b", Array::ones({4})}}, {{"version", "new"}});
    } catch (...) {
      std::_Exit(3);
    }
    std::_Exit(4);  // the fault injection did not fire
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 77);

  // The old file is untouched, byte for byte, and still loads.
  REQUIRE(read_bytes(path) == before);
  Safetensors st = load_safetensors(path);
  REQUIRE(st.metadata.at("version") == "old");
  require_same(st.get("w"), old_w);

  // The only other file is the child's half-written temporary, which the loader refuses as truncated.
  const std::string tmp_name = "model.safetensors.tmp." + std::to_string(pid);
  std::vector<std::string> files = dir.files();
  std::sort(files.begin(), files.end());
  REQUIRE(files == std::vector<std::string>{"model.safetensors", tmp_name});
  const std::vector<uint8_t> partial = read_bytes(dir.file(tmp_name));
  const std::vector<uint8_t> full = serialize_safetensors({{"w", big}, {"b", Array::ones({4})}}, {{"version", "new"}});
  REQUIRE(partial.size() < full.size());
  REQUIRE(std::equal(partial.begin(), partial.end(), full.begin()));  // a prefix of the real file
  REQUIRE_THROWS_WITH(load_safetensors(dir.file(tmp_name)), Contains("past the end"));
}

TEST_CASE("safetensors: NumPy reads a qkvlab file with json and frombuffer alone", "[safetensors]") {
  // The first python3 with numpy: the one on PATH (may be a virtualenv without it), else the system one.
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"})
    if (std::system((std::string(candidate) + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  if (python.empty()) {
    WARN("python3 with numpy is not available: skipping the NumPy interoperability check");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("np.safetensors");
  Array f32 = Array::arange(6).view({2, 3});
  Array f64 = Array::full({2}, -0.25, DType::F64);
  Array i64 = Array::from_vector(std::vector<int64_t>{-5, 1LL << 40, 7}, {3});
  Array f32t = Array::arange(6).view({2, 3}).transpose(0, 1);  // written as (3,2) [[0,3],[1,4],[2,5]]
  save_safetensors(path, {{"f32", f32}, {"f64", f64}, {"i64", i64}, {"f32t", f32t}, {"s", Array::scalar(2.0)}},
                   {{"config", "{\"task\": \"lm\"}"}});
  const std::string script = dir.file("check.py");
  {
    std::ofstream py(script);
    py << R"(import json, struct, sys
import numpy as np
raw = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', raw[:8])
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
types = {'F32': '<f4', 'F64': '<f8', 'I64': '<i8'}
def get(name):
    e = header[name]
    b, end = e['data_offsets']
    return np.frombuffer(data[b:end], dtype=types[e['dtype']]).reshape(e['shape'])
assert n % 8 == 0
assert json.loads(header['__metadata__']['config']) == {'task': 'lm'}
assert np.array_equal(get('f32'), np.arange(6, dtype=np.float32).reshape(2, 3))
assert get('f32').dtype == np.float32
assert np.array_equal(get('f64'), np.full(2, -0.25))
assert get('i64').tolist() == [-5, 1 << 40, 7]
assert np.array_equal(get('f32t'), np.array([[0, 3], [1, 4], [2, 5]], dtype=np.float32))
assert get('s').shape == () and get('s') == 2.0
print('ok')
)";
  }
  REQUIRE(std::system((python + " " + script + " " + path + " >/dev/null").c_str()) == 0);
  std::remove(script.c_str());
}

TEST_CASE("safetensors: random corruptions are refused with an Error, never a crash", "[safetensors]") {
  // A small fuzz: truncations and byte flips of a valid file. Run under `make test-debug` (ASan) this also proves
  // that parse_safetensors never reads out of bounds.
  Generator gen(11);
  std::vector<uint8_t> good = serialize_safetensors(
      {{"a", Array::arange(5)}, {"b", Array::scalar(1.0, DType::F64)}, {"c", Array::zeros({0, 2}, DType::I64)}},
      {{"config", "{}"}});
  REQUIRE(parse_safetensors(good.data(), good.size(), "good").tensors.size() == 3);
  int refused = 0, accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> b = good;
    if (i % 3 == 0) {
      b.resize(size_t(gen.randint(0, int64_t(good.size()))));
    } else {
      int flips = int(gen.randint(1, 4));
      for (int k = 0; k < flips; ++k) b[size_t(gen.randint(0, int64_t(b.size())))] = uint8_t(gen.randint(0, 256));
    }
    try {
      parse_safetensors(b.data(), b.size(), "fuzz");
      ++accepted;  // e.g. a flip inside the tensor data
    } catch (const Error& e) {
      REQUIRE_THAT(e.what(), Contains("fuzz"));
      ++refused;
    }
  }
  REQUIRE(refused > 1000);
  REQUIRE(accepted > 0);
}

TEST_CASE("safetensors: a save removes torn temporaries of dead writers, never one that is being written",
          "[safetensors]") {
  testing::TempDir tmp("stale_tmp");
  const std::string path = tmp.file("model.safetensors");
  // Pids of processes that have exited: forks that return at once.
  auto dead_pid = [] {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return child;
  };
  const pid_t child = dead_pid(), child2 = dead_pid();
  REQUIRE(child > 0);
  REQUIRE(child2 > 0);
  REQUIRE(child2 != child);
  const std::string dead = path + ".tmp." + std::to_string(child);
  const std::string locked = path + ".tmp." + std::to_string(child2);  // no such process here either...
  const std::string other = tmp.file("optimizer.safetensors.tmp." + std::to_string(child));
  for (const std::string& f : {dead, locked, other}) std::ofstream(f) << "half a checkpoint";
  // ...but its writer (on another machine sharing the directory, say) holds the lock: it is being written.
  const int fd = ::open(locked.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);

  save_safetensors(path, {{"w", Array::ones({2, 2})}});
  auto exists = [](const std::string& f) { return ::access(f.c_str(), F_OK) == 0; };
  CHECK_FALSE(exists(dead));    // a dead writer's torn file: gone
  CHECK(exists(locked));        // locked: left alone
  CHECK(exists(other));         // another file's temporary: not this save's business
  CHECK(exists(path));
  ::close(fd);
}
