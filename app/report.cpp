#include "app/report.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "app/common.h"
#include "tensor/error.h"

namespace qkvlab::app {

namespace {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keeps results.json's key order (recipe, ...)

// The page: HTML, CSS and script, with three markers the writer replaces (see kPage's comments).
constexpr const char* kPage =
#include "app/report_page.inc"
    ;

std::string read_file(const std::string& path, bool* ok) {
  std::ifstream f(path, std::ios::binary);
  *ok = bool(f);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  *ok = !f.bad();
  return s.str();
}

// Writes `bytes` to path through a temporary file in the same folder and one rename, so a reader (a browser
// reloading the page) never sees half a file.
void write_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    check(bool(f), "cannot write ", tmp, ": ", std::strerror(errno));
    f.write(bytes.data(), std::streamsize(bytes.size()));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      fail("cannot write ", tmp, " (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    fail("cannot rename ", tmp, " to ", path, ": ", std::strerror(e));
  }
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = uint32_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= uint32_t(bytes[i + 2]);
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? abc[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? abc[v & 63] : '=';
  }
  return out;
}

double round_sig(double v, int digits) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return std::strtod(buf, nullptr);
}

// The paper's figure for a variant of this study, when it has one: token accuracy (Table 1, the mean over the
// paper's sweep of sizes, for the five synthetic tasks), test accuracy (Table 2, Fashion-MNIST) or the validation
// perplexity change against QKV in percent (Table 13, the 300M models; GQA and Q-GQA there share K/V among H/4
// heads, so they match our gqa:H/4 and kv-gqa:H/4). The same figures are quoted in docs/RESULTS.md.
struct PaperFigures {
  std::string kind;     // "accuracy" or "change" ("" when the paper has nothing for the task)
  std::string caption;  // where they come from
  std::map<std::string, double> by_variant;  // variant id -> figure
};

PaperFigures paper_figures(const std::string& task, int64_t heads) {
  PaperFigures p;
  const std::vector<std::string> six{"qkv", "qk", "qk+", "kv", "single", "single+"};
  std::map<std::string, std::vector<double>> synthetic{
      {"reverse", {0.698, 0.705, 0.718, 0.701, 0.514, 0.581}},
      {"sort", {0.971, 0.967, 0.963, 0.958, 0.939, 0.957}},
      {"sub", {1, 1, 1, 1, 1, 1}},
      {"swap", {0.588, 0.597, 0.671, 0.59, 0.446, 0.576}},
      {"copy", {1, 1, 1, 1, 1, 1}},
  };
  if (auto it = synthetic.find(task); it != synthetic.end()) {
    p.kind = "accuracy";
    p.caption = "paper Table 1: token accuracy, mean over the paper's sweep of model sizes and lengths";
    for (size_t i = 0; i < six.size(); ++i) p.by_variant[six[i]] = it->second[i];
  } else if (task == "fmnist") {
    p.kind = "accuracy";
    p.caption = "paper Table 2: Fashion-MNIST test accuracy";
    const std::vector<double> acc{0.887, 0.885, 0.884, 0.883, 0.877, 0.875};
    for (size_t i = 0; i < six.size(); ++i) p.by_variant[six[i]] = acc[i];
  } else if (task == "lm") {
    p.kind = "change";
    p.caption = "paper Table 13: validation perplexity change against QKV, 300M models (GQA/Q-GQA: H/4 KV heads)";
    p.by_variant = {{"qkv", 0.0}, {"kv", 3.1}, {"qk", 4.9}, {"single", 25.4}, {"mqa", 1.5}, {"kv-mqa", 4.8}};
    if (heads >= 4 && heads % 4 == 0) {
      p.by_variant["gqa:" + std::to_string(heads / 4)] = 0.7;
      p.by_variant["kv-gqa:" + std::to_string(heads / 4)] = 3.9;
    }
  }
  return p;
}

// One seed's run folder of a variant: <dir>/<variant> (one seed) or <dir>/<variant>/seed<N>.
struct SeedDir {
  std::string path, name;
  int64_t seed = -1;
};

std::vector<SeedDir> seed_dirs(const std::string& variant_dir) {
  std::vector<SeedDir> out;
  std::error_code ec;
  if (!fs::is_directory(variant_dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(variant_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("seed", 0) != 0 || name.size() == 4) continue;
    if (name.find_first_not_of("0123456789", 4) != std::string::npos) continue;
    out.push_back({e.path().string(), name, std::stoll(name.substr(4))});
  }
  std::sort(out.begin(), out.end(), [](const SeedDir& a, const SeedDir& b) { return a.seed < b.seed; });
  if (out.empty() && (fs::exists(variant_dir + "/metrics.jsonl", ec) || fs::exists(variant_dir + "/attention", ec)))
    out.push_back({variant_dir, "", -1});
  return out;
}

// The training-loss lines of metrics.jsonl ({"step", "loss", ...}); eval lines and unreadable lines are skipped.
json read_curve(const std::string& path) {
  json curve = json::array();
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    json m = json::parse(line, nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m.contains("loss") || !m.contains("step")) continue;
    if (!m["loss"].is_number() || !m["step"].is_number()) continue;
    curve.push_back({m["step"].get<int64_t>(), round_sig(m["loss"].get<double>(), 6)});
  }
  return curve;
}

// maps.json as the page wants it: each map's probabilities as bytes, 0..255 of their row's maximum (base64; 8 bits is
// the colour depth the canvas shows anyway, and per row even a causal map's long rows of ~1/T keep their detail),
// with the row maxima (6 digits), the map's maximum and max|S-S^T|. Returns null when the file is absent or not what
// write_map_values writes.
json read_maps(const std::string& path, int64_t* count, int64_t* seed) {
  bool ok = false;
  std::string text = read_file(path, &ok);
  if (!ok) return nullptr;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("inputs") || !j["inputs"].is_array()) return nullptr;
  if (j.contains("seed") && j["seed"].is_number_integer()) *seed = j["seed"].get<int64_t>();
  json inputs = json::array();
  for (const json& in : j["inputs"]) {
    if (!in.is_object() || !in.contains("maps") || !in["maps"].is_array()) return nullptr;
    json maps = json::array();
    for (const json& m : in["maps"]) {
      if (!m.is_object() || !m.contains("probs") || !m["probs"].is_array() || !m.contains("size")) return nullptr;
      const int64_t n = m.value("size", int64_t(0));
      const json& p = m["probs"];
      if (n <= 0 || int64_t(p.size()) != n * n) return nullptr;
      for (const json& v : p)
        if (!v.is_number()) return nullptr;
      double vmax = 0;
      json rows = json::array();
      std::vector<uint8_t> q(p.size());
      for (int64_t r = 0; r < n; ++r) {
        double rmax = 0;
        for (int64_t c = 0; c < n; ++c) rmax = std::max(rmax, p[size_t(r * n + c)].get<double>());
        for (int64_t c = 0; c < n; ++c) {
          double v = rmax > 0 ? p[size_t(r * n + c)].get<double>() / rmax : 0.0;
          q[size_t(r * n + c)] = uint8_t(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
        }
        rows.push_back(round_sig(rmax, 6));
        vmax = std::max(vmax, rmax);
      }
      maps.push_back({{"layer", m.value("layer", int64_t(0))},
                      {"head", m.value("head", int64_t(0))},
                      {"size", n},
                      {"asymmetry", m.value("asymmetry", 0.0)},
                      {"vmax", vmax},
                      {"rows", std::move(rows)},
                      {"q", base64(q)}});
      ++*count;
    }
    inputs.push_back({{"description", in.value("description", std::string())},
                      {"labels", in.contains("labels") && in["labels"].is_array() ? in["labels"] : json::array()},
                      {"maps", maps}});
  }
  return inputs;
}

// Text that is not UTF-8 (a label cut inside a character) becomes U+FFFD rather than an exception.
// Inline <script> content must not close the element early: "<" only occurs inside JSON strings, where \u003c
// means the same character.
std::string script_safe_json(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '<') out += "\\u003c";
    else out += c;
  }
  return out;
}

bool contains_ci(const std::string& hay, const std::string& needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower((unsigned char)a) == std::tolower((unsigned char)b); });
  return it != hay.end();
}

void replace_once(std::string& s, const std::string& marker, const std::string& with) {
  size_t at = s.find(marker);
  check(at != std::string::npos, "report: the page template has no ", marker);
  s.replace(at, marker.size(), with);
}
}  // namespace

void write_map_values(TransformerModel& model, const std::vector<ModelInput>& inputs, uint64_t seed,
                      const std::string& path) {
  NoGradGuard no_grad;
  model.eval();
  json j;
  j["variant"] = model.config().variant.id();
  j["seed"] = seed;
  j["inputs"] = json::array();
  for (const ModelInput& input : inputs) {
    std::vector<AttentionMaps> maps;
    if (auto* g = dynamic_cast<GPT*>(&model)) g->forward(input.x, nullptr, &maps);
    else if (auto* e = dynamic_cast<Encoder*>(&model)) e->forward(input.x, &maps);
    else dynamic_cast<ViT&>(model).forward(input.x, &maps);
    json in = {{"description", input.description}, {"labels", input.labels}, {"maps", json::array()}};
    for (size_t l = 0; l < maps.size(); ++l) {
      const Array& S = maps[l].scores;  // (1,H,T,T)
      const Array& P = maps[l].probs;
      const int64_t H = S.size(1), T = S.size(2);
      for (int64_t h = 0; h < H; ++h) {
        Array s = S.select(0, 0).select(0, h);
        json probs = json::array();
        for (float v : P.select(0, 0).select(0, h).contiguous().to_floats()) probs.push_back(round_sig(v, 5));
        in["maps"].push_back({{"layer", int64_t(l)},
                              {"head", h},
                              {"size", T},
                              {"asymmetry", max_all(abs(sub(s, s.transpose(0, 1))))},
                              {"probs", std::move(probs)}});
      }
    }
    j["inputs"].push_back(std::move(in));
  }
  write_atomically(path, j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
}

ReportInfo write_report(const std::string& dir, const std::string& chart_js) {
  const std::string results_path = dir + "/results.json";
  bool ok = false;
  const std::string text = read_file(results_path, &ok);
  check(ok, "report: no results.json in ", dir, " (give the --out folder of a finished study)");
  json results = json::parse(text, nullptr, false);
  check(!results.is_discarded(), "report: ", results_path, " is not valid JSON (damaged? rerun the study)");
  check(results.is_object() && results.contains("variants") && results["variants"].is_array() &&
            !results["variants"].empty(),
        "report: ", results_path, " has no \"variants\" list; it is not a study's results");
  for (const json& v : results["variants"])
    check(v.is_object() && v.contains("variant") && v["variant"].is_string() && v.contains("paper_name") &&
              v["paper_name"].is_string(),
          "report: ", results_path, " has a variant entry without \"variant\" and \"paper_name\"");

  ReportInfo info;
  info.path = dir + "/report.html";
  json meta = json::object();
  for (auto it = results.begin(); it != results.end(); ++it)
    if (it.key() != "variants") meta[it.key()] = it.value();
  std::error_code ec;
  const fs::path where = fs::absolute(dir, ec).lexically_normal();  // "runs/demo/" and "." name a folder too
  std::string folder = where.filename().string();
  if (folder.empty()) folder = where.parent_path().filename().string();
  meta["folder"] = folder;

  const std::string task = results.value("task", std::string());
  const int64_t heads = results.contains("heads") && results["heads"].is_number_integer()
                            ? results["heads"].get<int64_t>() : 0;
  PaperFigures paper = paper_figures(task, heads);

  json variants = json::array();
  for (const json& v : results["variants"]) {
    json out = v;
    const std::string id = v["variant"].get<std::string>();
    if (auto it = paper.by_variant.find(id); it != paper.by_variant.end()) out["paper"] = it->second;
    else out["paper"] = nullptr;
    json runs = json::array();
    int64_t index = 0;
    for (const SeedDir& sd : seed_dirs(dir + "/" + variant_dir_name(id))) {
      int64_t seed = sd.seed;
      json maps = read_maps(sd.path + "/attention/maps.json", &info.maps, &seed);
      std::string name = sd.name.empty() ? (seed >= 0 ? "seed" + std::to_string(seed) : "run") : sd.name;
      runs.push_back({{"name", name},
                      {"index", index++},
                      {"curve", read_curve(sd.path + "/metrics.jsonl")},
                      {"inputs", maps.is_null() ? json::array() : maps}});
    }
    out["runs"] = std::move(runs);
    variants.push_back(std::move(out));
  }
  info.variants = int64_t(variants.size());

  // Chart.js, read now so the page needs no network. It must be one plain script that cannot end the element.
  const std::string lib_path = chart_js.empty() ? kDefaultChartJs : chart_js;
  std::string lib = read_file(lib_path, &ok);
  info.charts = ok && lib.find("Chart") != std::string::npos && !contains_ci(lib, "</script") &&
                lib.find("<!--") == std::string::npos;
  if (!info.charts) lib.clear();

  json data = {{"meta", meta},
               {"paper", paper.kind.empty() ? json(nullptr)
                                            : json{{"kind", paper.kind}, {"caption", paper.caption}}},
               {"charts", info.charts},
               {"chartjs_path", lib_path},
               {"variants", variants}};
  std::string page = kPage;
  std::string title = "qkvlab study: " + (task.empty() ? std::string("?") : task) + " (" + folder + ")";
  std::string safe_title;
  for (char c : title) {
    if (c == '<') safe_title += "&lt;";
    else if (c == '>') safe_title += "&gt;";
    else if (c == '&') safe_title += "&amp;";
    else safe_title += c;
  }
  replace_once(page, "@@TITLE@@", safe_title);
  // The library and the data go in last, so that markers inside them are never looked for.
  const std::string data_text = script_safe_json(data);
  size_t lib_at = page.find("@@CHARTJS@@"), data_at = page.find("@@DATA@@");
  check(lib_at != std::string::npos && data_at != std::string::npos && lib_at < data_at,
        "report: the page template lacks its markers");
  page = page.substr(0, lib_at) + lib + page.substr(lib_at + 11, data_at - lib_at - 11) + data_text +
         page.substr(data_at + 8);
  write_atomically(info.path, page);
  info.bytes = int64_t(page.size());
  return info;
}

bool write_report_after_study(const std::string& dir) {
  try {
    ReportInfo r = write_report(dir);
    if (!r.charts)
      std::fprintf(stderr, "study: Chart.js not found at %s: report.html shows tables instead of charts (install "
                   "libjs-chart.js, then run qkvlab report --dir %s)\n", kDefaultChartJs, dir.c_str());
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "study: report.html not written: %s\n", e.what());
    return false;
  }
}

}  // namespace qkvlab::app
