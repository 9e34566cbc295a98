// Shared pieces of the qkvlab command line: flags every command takes, output helpers, error conventions.
// Every user error is a qkvlab::Error; main() prints it as one line on stderr and exits with status 2.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/format.h"  // with_commas, fixed

namespace qkvlab::app {

struct CommonFlags {
  uint64_t seed = 0;
  int threads = 0;  // 0: QKVLAB_THREADS or all cores
  bool json = false;
};

// Adds --seed, --threads and --json to a subcommand.
void add_common_flags(CLI::App* cmd, CommonFlags& flags);
// Applies --threads (after parsing).
void apply_common_flags(const CommonFlags& flags);

// Each subcommand lives in its own file and registers itself here.
void register_cache(CLI::App& app);
void register_gradcheck(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_generate(CLI::App& app);
void register_attention(CLI::App& app);
void register_study(CLI::App& app);
void register_bench(CLI::App& app);
void register_report(CLI::App& app);

// mkdir -p: creates the folder and its parents; errors if it cannot, or if the result is not a writable folder.
void make_dirs(const std::string& path);

// A variant id as a folder name: "kv-gqa:4" -> "kv-gqa-4".
std::string variant_dir_name(std::string id);

// A markdown table: header row, separator, rows; columns padded to their widest cell.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

}  // namespace qkvlab::app
