#include "app/common.h"
#include "app/flag_checks.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <sstream>

#include "tensor/error.h"
#include "tensor/parallel.h"

namespace qkvlab::app {

void add_common_flags(CLI::App* cmd, CommonFlags& flags) {
  cmd->add_option("--seed", flags.seed, "random seed: the same seed and thread count give the same results")
      ->default_val(0);
  cmd->add_option("--threads", flags.threads, "threads for the kernels (default: QKVLAB_THREADS or all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--json", flags.json, "print one machine-readable JSON document on stdout instead of tables");
}

void apply_common_flags(const CommonFlags& flags) {
  if (flags.threads > 0) set_num_threads(flags.threads);
  (void)num_threads();  // a bad QKVLAB_THREADS is an error now, before anything is written
}

namespace {
// "" when `s` is a decimal whole number that fits (int64, or uint64 when `is_unsigned`), else why not.
std::string whole_number_error(const std::string& s, bool is_unsigned) {
  const bool negative = !s.empty() && s[0] == '-';
  const std::string digits = s.substr(negative || (!s.empty() && s[0] == '+') ? 1 : 0);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    return "'" + s + "' is not a whole number (decimal digits only)";
  if (negative && is_unsigned) return s + " is negative; expected a whole number >= 0";
  const std::string limit = is_unsigned ? "18446744073709551615" : negative ? "9223372036854775808"
                                                                             : "9223372036854775807";
  std::string d = digits.substr(std::min(digits.find_first_not_of('0'), digits.size() - 1));
  if (d.size() > limit.size() || (d.size() == limit.size() && d > limit))
    return s + " is beyond what qkvlab can count (" + (negative ? "-" : "") + limit + " is the limit)";
  return "";
}
}  // namespace

void check_integer_flags(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    for (CLI::Option* opt : sub->get_options()) {
      const std::string type = opt->get_type_name();
      if (type != "INT" && type != "UINT") continue;
      const bool is_unsigned = type == "UINT";
      opt->check(CLI::Validator(
          [is_unsigned](std::string& s) { return whole_number_error(s, is_unsigned); }, "", "whole number"));
    }
    check_integer_flags(*sub);
  }
}

void make_dirs(const std::string& path) {
  check(!path.empty(), "no folder given");
  std::string acc;
  for (size_t i = 0; i <= path.size(); ++i) {
    if ((i == path.size() || path[i] == '/') && !acc.empty() && ::mkdir(acc.c_str(), 0755) != 0 && errno != EEXIST)
      fail("cannot create folder ", acc, ": ", std::strerror(errno));
    if (i < path.size()) acc += path[i];
  }
  struct stat st;
  check(::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode), path, " is not a folder");
  check(::access(path.c_str(), W_OK) == 0, "folder ", path, " is not writable");
}

std::string variant_dir_name(std::string id) {
  for (char& c : id)
    if (c == ':') c = '-';
  return id;
}

namespace {
// Characters on screen: UTF-8 continuation bytes (10xxxxxx) do not count, so "±" is one wide.
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < header.size(); ++c) w[c] = display_width(header[c]);
  for (auto& r : rows)
    for (size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], display_width(r[c]));
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& cells) {
    os << "|";
    for (size_t c = 0; c < w.size(); ++c) {
      std::string cell = c < cells.size() ? cells[c] : "";
      os << " " << cell << std::string(w[c] - display_width(cell), ' ') << " |";
    }
    os << "\n";
  };
  line(header);
  os << "|";
  for (size_t c = 0; c < w.size(); ++c) os << std::string(w[c] + 2, '-') << "|";
  os << "\n";
  for (auto& r : rows) line(r);
  return os.str();
}

}  // namespace qkvlab::app
