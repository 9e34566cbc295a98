// qkvlab gradcheck: finite-difference check of every differentiable op, one row per op (double precision).
#include <nlohmann/json.hpp>

#include "app/common.h"
#include "autograd/gradcheck_suite.h"

namespace qkvlab::app {

namespace {
struct GradcheckArgs {
  CommonFlags common;
  std::string filter;
};

void run(const GradcheckArgs& a) {
  apply_common_flags(a.common);
  std::vector<GradcheckRow> rows = run_gradcheck_suite(a.filter);
  check(!rows.empty(), "gradcheck: no op matches '", a.filter, "'");
  int failed = 0;
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  std::vector<std::vector<std::string>> table;
  for (const GradcheckRow& r : rows) {
    failed += !r.ok;
    char err[32], rel[32];
    std::snprintf(err, sizeof err, "%.2e", r.max_abs_error);
    std::snprintf(rel, sizeof rel, "%.2e", r.max_rel_error);
    table.push_back({r.op, r.ok ? "ok" : "FAIL", err, rel, std::to_string(r.elements)});
    out.push_back({{"op", r.op},
                   {"ok", r.ok},
                   {"max_abs_error", r.max_abs_error},
                   {"max_rel_error", r.max_rel_error},
                   {"elements", r.elements},
                   {"message", r.message}});
  }
  if (a.common.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s", markdown_table({"op", "result", "max abs error", "max rel error", "elements"}, table).c_str());
    for (const GradcheckRow& r : rows)
      if (!r.ok) std::printf("\n%s\n", r.message.c_str());
    std::printf("\n%zu ops, %d failed (central differences in float64, every element)\n", rows.size(), failed);
  }
  if (failed) fail("gradcheck: ", failed, " of ", rows.size(), " ops failed");
}
}  // namespace

void register_gradcheck(CLI::App& app) {
  auto args = std::make_shared<GradcheckArgs>();
  CLI::App* cmd = app.add_subcommand(
      "gradcheck", "Check every differentiable op's backward against finite differences in double precision");
  cmd->add_option("--op", args->filter, "only ops whose name contains this text");
  add_common_flags(cmd, args->common);
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
