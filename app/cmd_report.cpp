// qkvlab report: (re)writes a study's report.html from its output folder (app/report.h), e.g. after a study that
// was run by an older build, or to pick up a newly installed Chart.js. `study` writes the page itself at its end.
#include <nlohmann/json.hpp>

#include "app/common.h"
#include "app/report.h"

namespace qkvlab::app {

namespace {
struct ReportArgs {
  std::string dir;
  std::string chart_js = kDefaultChartJs;
  bool json = false;
};

void run(const ReportArgs& a) {
  ReportInfo r = write_report(a.dir, a.chart_js);
  if (a.json) {
    nlohmann::ordered_json j = {{"path", r.path}, {"bytes", r.bytes}, {"charts", r.charts},
                                {"variants", r.variants}, {"maps", r.maps}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("wrote %s (%.0f KB, %lld variants, %lld attention maps)\n", r.path.c_str(), double(r.bytes) / 1024.0,
              (long long)r.variants, (long long)r.maps);
  if (!r.charts)
    std::printf("Chart.js not found at %s (Debian package libjs-chart.js): the page shows tables instead of charts\n",
                a.chart_js.c_str());
}
}  // namespace

void register_report(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write report.html for a study's output folder: table, loss curves, attention maps, KV cache, "
                "one self-contained page that opens offline");
  cmd->add_option("--dir", args->dir, "the study's output folder (its --out; holds results.json)")->required();
  cmd->add_option("--chart-js", args->chart_js, "Chart.js file to inline (libjs-chart.js)")
      ->default_val(kDefaultChartJs);
  cmd->add_flag("--json", args->json, "print what was written as one JSON document");
  cmd->footer("Example:\n  qkvlab report --dir runs/demo   # then open runs/demo/report.html in a browser");
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
