#include "models/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace qkvlab {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeader = 100ull * 1024 * 1024;  // the reference implementation's limit
constexpr int kMaxDepth = 16;                           // a real header nests 3 deep

// The data section is little-endian; on a big-endian host every element is byte-swapped on the way in and out.
void to_little_endian(uint8_t* p, size_t bytes, size_t elem) {
  if constexpr (std::endian::native == std::endian::big) {
    for (size_t i = 0; i + elem <= bytes; i += elem) std::reverse(p + i, p + i + elem);
  } else {
    (void)p, (void)bytes, (void)elem;
  }
}

bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32") out = DType::F32;
  else if (s == "F64") out = DType::F64;
  else if (s == "I64") out = DType::I64;
  else return false;
  return true;
}

std::string errno_str() { return std::strerror(errno); }

// ---- writing ----

struct Entry {
  std::string name;
  Array data;  // contiguous
  uint64_t begin, end;
};

std::vector<Entry> plan(const std::vector<std::pair<std::string, Array>>& tensors, const std::string& where) {
  std::vector<Entry> entries;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, a] : tensors) {
    check(!name.empty(), "safetensors: ", where, ": a tensor has an empty name");
    check(name != "__metadata__", "safetensors: ", where, ": \"__metadata__\" is reserved and cannot name a tensor");
    check(seen.insert(name).second, "safetensors: ", where, ": duplicate tensor name '", name, "'");
    check(a.defined(), "safetensors: ", where, ": tensor '", name, "' is undefined");
    Array c = a.contiguous();
    uint64_t bytes = uint64_t(c.numel()) * dtype_size(c.dtype());
    entries.push_back({name, c, offset, offset + bytes});
    offset += bytes;
  }
  return entries;
}

std::string header_json(const std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata) {
  ordered_json h = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  for (const auto& e : entries) {
    ordered_json t = ordered_json::object();
    t["dtype"] = safetensors_dtype(e.data.dtype());
    t["shape"] = e.data.shape();
    t["data_offsets"] = {e.begin, e.end};
    h[e.name] = t;
  }
  // Invalid UTF-8 in a name or metadata value is an error rather than a file other tools cannot read.
  std::string s;
  try {
    s = h.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& ex) {
    fail("safetensors: a tensor name or metadata string is not valid UTF-8 (", ex.what(), ")");
  }
  s.append((8 - s.size() % 8) % 8, ' ');  // so that the data section starts 8-byte aligned
  return s;
}

void put_u64_le(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}

// The bytes of one tensor in file order (little-endian).
std::vector<uint8_t> tensor_bytes(const Entry& e) {
  std::vector<uint8_t> out(e.end - e.begin);
  if (!out.empty()) {
    const uint8_t* src = static_cast<const uint8_t*>(e.data.storage()->data()) +
                         e.data.offset() * int64_t(dtype_size(e.data.dtype()));
    std::memcpy(out.data(), src, out.size());
    to_little_endian(out.data(), out.size(), dtype_size(e.data.dtype()));
  }
  return out;
}

// QKVLAB_FAULT_INJECT=enospc-after:BYTES: the writes of save_safetensors fail with ENOSPC ("No space left on
// device") once the process has written BYTES bytes through them, as on a full disk (a test hook: docs/RELIABILITY.md).
int64_t enospc_budget() {
  static const int64_t budget = [] {
    const char* fault = std::getenv("QKVLAB_FAULT_INJECT");
    const std::string f = fault ? fault : "", key = "enospc-after:";
    if (f.rfind(key, 0) != 0) return int64_t(-1);
    return int64_t(std::strtoll(f.c_str() + key.size(), nullptr, 10));
  }();
  return budget;
}
std::atomic<int64_t> g_written{0};

ssize_t write_some(int fd, const uint8_t* p, size_t n) {
  const int64_t budget = enospc_budget();
  if (budget < 0) return ::write(fd, p, n);
  const int64_t left = budget - g_written.load();
  if (left <= 0) {
    errno = ENOSPC;
    return -1;
  }
  ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(left)));
  if (w > 0) g_written += w;
  return w;
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& tmp) {
  while (n > 0) {
    ssize_t w = write_some(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      std::string why = errno_str();
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("safetensors: cannot write ", tmp, ": ", why);
    }
    p += w;
    n -= size_t(w);
  }
}

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// "<path>.tmp.<pid>" files left by writers that died mid-write (a crash, a kill -9): removed once this process has
// saved <path>, so a run directory does not collect them. A writer holds an exclusive flock on its temporary while
// it writes, and the kernel drops it when the writer dies; so a temporary is removed only when its lock can be
// taken, and (for the moment between a writer's open and its flock) when no process with its pid lives here.
// A pid alone would not do: on a file system shared between machines it names a process of another host.
void remove_stale_temporaries(const std::string& path) {
  const std::string dir = dir_of(path);
  const std::string base = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  const std::string prefix = base + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    const pid_t p = pid_t(std::stol(pid));
    if (p != ::getpid() && !(::kill(p, 0) != 0 && errno == ESRCH)) continue;  // its writer may be alive here
    const std::string file = dir + "/" + name;
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(file.c_str());  // nobody is writing it
    ::close(fd);
  }
  ::closedir(d);
}

// QKVLAB_FAULT_INJECT=kill-mid-write kills the first save of the process, kill-mid-write:N the N-th (so that a
// test can let a run write a good checkpoint first and then crash while writing the next one).
bool fault_injection_fires() {
  const char* fault = std::getenv("QKVLAB_FAULT_INJECT");
  if (fault == nullptr) return false;
  const std::string f = fault, kill = "kill-mid-write";
  if (f.rfind(kill, 0) != 0) return false;
  long nth = 1;
  if (f.size() > kill.size()) {
    if (f[kill.size()] != ':') return false;
    nth = std::strtol(f.c_str() + kill.size() + 1, nullptr, 10);
  }
  static std::atomic<long> saves{0};
  return ++saves == nth;
}

}  // namespace

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
  }
  return "?";
}

std::vector<uint8_t> serialize_safetensors(const std::vector<std::pair<std::string, Array>>& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  std::vector<Entry> entries = plan(tensors, "serialize");
  std::string header = header_json(entries, metadata);
  std::vector<uint8_t> out(8 + header.size());
  put_u64_le(out.data(), header.size());
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (const auto& e : entries) {
    std::vector<uint8_t> b = tensor_bytes(e);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Array>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  check(!path.empty(), "safetensors: save: no path given");
  std::vector<Entry> entries = plan(tensors, path);
  std::string header;
  try {
    header = header_json(entries, metadata);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  const uint64_t data_bytes = entries.empty() ? 0 : entries.back().end;

  const bool kill_mid_write = fault_injection_fires();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("safetensors: cannot create ", tmp, " (to write ", path, "): ", errno_str());
  ::flock(fd, LOCK_EX);  // "being written": remove_stale_temporaries leaves a locked temporary alone

  uint8_t len[8];
  put_u64_le(len, header.size());
  write_all(fd, len, 8, tmp);
  write_all(fd, reinterpret_cast<const uint8_t*>(header.data()), header.size(), tmp);
  uint64_t written = 0;
  for (const auto& e : entries) {
    std::vector<uint8_t> b = tensor_bytes(e);
    if (kill_mid_write && written + b.size() >= data_bytes / 2) {
      // Simulated crash: half the data reaches the temporary file, then the process dies mid-write.
      write_all(fd, b.data(), size_t(data_bytes / 2 - written), tmp);
      std::_Exit(77);
    }
    write_all(fd, b.data(), b.size(), tmp);
    written += b.size();
  }
  if (kill_mid_write) std::_Exit(77);  // no data at all: die after the header

  if (::fsync(fd) != 0) {
    std::string why = errno_str();
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("safetensors: fsync of ", tmp, " failed: ", why);
  }
  if (::close(fd) != 0) {
    std::string why = errno_str();
    ::unlink(tmp.c_str());
    fail("safetensors: cannot close ", tmp, ": ", why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_str();
    ::unlink(tmp.c_str());
    fail("safetensors: cannot rename ", tmp, " to ", path, ": ", why);
  }
  // The rename itself is durable only once the directory entry is on disk.
  int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // some file systems refuse fsync on directories; the file itself is already safe
    ::close(dfd);
  }
  remove_stale_temporaries(path);
}

// ---- reading ----

Safetensors load_safetensors(const std::string& path) {
  // (errno is read in a statement of its own: the order in which check()'s arguments are evaluated is unspecified)
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail("safetensors: cannot open ", path, ": ", errno_str());
  check(!S_ISDIR(st.st_mode), "safetensors: ", path, " is a directory, expected a .safetensors file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("safetensors: cannot open ", path, ": ", errno_str());
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      std::string why = errno_str();
      ::close(fd);
      fail("safetensors: cannot read ", path, ": ", why);
    }
    if (r == 0) break;
    bytes.insert(bytes.end(), buf, buf + r);
  }
  ::close(fd);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

Safetensors parse_safetensors(const uint8_t* data, size_t size, const std::string& source) {
  const std::string where = "safetensors: " + source + ": ";
  check(size >= 8, where, "the file is ", size, " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(data[i]) << (8 * i);
  check(n <= kMaxHeader, where, "header length ", n, " is absurd (more than 100 MB): not a safetensors file?");
  check(n <= size - 8, where, "header length ", n, " is larger than the file (", size,
        " bytes, so at most ", size - 8, " header bytes): truncated or not a safetensors file");
  const char* hb = reinterpret_cast<const char*>(data + 8);
  const uint64_t data_size = size - 8 - n;
  const uint8_t* section = data + 8 + n;

  // Parse the header, rejecting duplicate keys (nlohmann would silently keep the last) and deep nesting.
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  int duplicate_depth = 0;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (depth > kMaxDepth) fail(where, "header nests deeper than ", kMaxDepth, " levels");
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    else if (ev == json::parse_event_t::object_end) keys.pop_back();
    else if (ev == json::parse_event_t::key && !keys.empty() && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second) duplicate = k, duplicate_depth = int(keys.size());
    }
    return true;
  };
  json h;
  try {
    h = json::parse(hb, hb + n, cb);
  } catch (const json::exception& ex) {
    fail(where, "header is not valid JSON (", ex.what(), ")");
  }
  check(h.is_object(), where, "header must be a JSON object, got ", h.type_name());
  if (!duplicate.empty()) {
    if (duplicate_depth == 1) fail(where, "duplicate tensor name '", duplicate, "' in the header");
    fail(where, "duplicate key '", duplicate, "' in the header");
  }

  Safetensors out;
  out.source = source;
  struct Info {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Info> infos;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      check(v.is_object(), where, "__metadata__ must be an object of strings, got ", v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        check(m.value().is_string(), where, "__metadata__ value '", m.key(), "' must be a string, got ",
              m.value().type_name());
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    check(!name.empty(), where, "a tensor has an empty name (the writer refuses those too)");
    const std::string t = "tensor '" + name + "'";
    check(v.is_object(), where, t, ": expected an object {dtype, shape, data_offsets}, got ", v.type_name());
    check(v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), where, t,
          ": needs \"dtype\", \"shape\" and \"data_offsets\", got ", v.dump());
    Info info;
    info.name = name;
    const json& dt = v["dtype"];
    check(dt.is_string(), where, t, ": dtype must be a string, got ", dt.dump());
    check(parse_dtype(dt.get<std::string>(), info.dtype), where, t, ": unknown or unsupported dtype ", dt.dump(),
          " (qkvlab reads F32, F64, I64)");
    const json& sh = v["shape"];
    check(sh.is_array(), where, t, ": shape must be a list of sizes, got ", sh.dump());
    check(sh.size() <= 64, where, t, ": shape has ", sh.size(), " dims (at most 64)");
    // The product of the non-zero sizes must fit in int64 too: strides are computed from it even when numel is 0.
    uint64_t product = 1;
    bool has_zero = false;
    for (const json& s : sh) {
      check(s.is_number_integer(), where, t, ": shape ", sh.dump(), " has a size that is not an integer");
      check(s.is_number_unsigned() || s.get<int64_t>() >= 0, where, t, ": shape ", sh.dump(),
            " has a negative size");
      uint64_t d = s.get<uint64_t>();
      if (d == 0) has_zero = true;
      else check(!__builtin_mul_overflow(product, d, &product) && product <= uint64_t(INT64_MAX), where, t,
                 ": shape ", sh.dump(), " overflows");
      info.shape.push_back(int64_t(d));
    }
    const uint64_t numel = has_zero ? 0 : product;
    uint64_t bytes = 0;
    check(!__builtin_mul_overflow(numel, uint64_t(dtype_size(info.dtype)), &bytes), where, t, ": shape ", sh.dump(),
          " overflows");
    const json& off = v["data_offsets"];
    check(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), where,
          t, ": data_offsets must be two non-negative integers [begin, end], got ", off.dump());
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    check(info.begin <= info.end, where, t, ": data_offsets ", off.dump(), " end before they begin");
    check(info.end - info.begin == bytes, where, t, ": data_offsets ", off.dump(), " span ", info.end - info.begin,
          " bytes but ", dt.get<std::string>(), " ", info.shape, " needs ", bytes);
    check(info.end <= data_size, where, t, ": data_offsets ", off.dump(), " go past the end of the data section (",
          data_size, " bytes): truncated file?");
    infos.push_back(std::move(info));
  }

  // The tensors must tile the data section: sorted by offset, each begins where the previous one ended.
  std::stable_sort(infos.begin(), infos.end(), [](const Info& a, const Info& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  std::string prev = "the start of the data section";
  for (const Info& i : infos) {
    check(i.begin >= at, where, "tensor '", i.name, "' (bytes ", i.begin, "..", i.end, ") overlaps ", prev,
          " (which ends at byte ", at, ")");
    check(i.begin == at, where, "bytes ", at, "..", i.begin, " of the data section belong to no tensor (gap after ",
          prev, ")");
    at = i.end;
    prev = "tensor '" + i.name + "'";
  }
  check(at == data_size, where, "the data section has ", data_size, " bytes but the tensors cover only ", at,
        " (trailing bytes after ", prev, ")");

  for (const Info& i : infos) {
    Array a = Array::empty(i.shape, i.dtype);
    if (i.end > i.begin) {
      std::memcpy(a.storage()->data(), section + i.begin, i.end - i.begin);
      to_little_endian(static_cast<uint8_t*>(a.storage()->data()), i.end - i.begin, dtype_size(i.dtype));
    }
    out.tensors.emplace_back(i.name, std::move(a));
  }
  return out;
}

// ---- lookup ----

bool Safetensors::has(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.first == name) return true;
  return false;
}

const Array& Safetensors::get(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.first == name) return t.second;
  std::ostringstream os;
  os << "safetensors: " << (source.empty() ? std::string("<memory>") : source) << " has no tensor '" << name
     << "' (it has " << tensors.size() << " tensor" << (tensors.size() == 1 ? "" : "s");
  for (size_t i = 0; i < tensors.size() && i < 8; ++i) os << (i ? ", " : ": ") << tensors[i].first;
  if (tensors.size() > 8) os << ", ...";
  os << ")";
  throw Error(os.str());
}

}  // namespace qkvlab
