// report.html: a study's output folder as one self-contained web page (data, script and charting library inline, so
// it opens offline from disk). It reads what `study` leaves in the folder:
//   results.json                          the table (and, when present, init, pe_init, recipe, pe_temperature)
//   <variant>[/seed<N>]/metrics.jsonl     the training loss of every seed (the curves and their spread)
//   <variant>[/seed<N>]/attention/maps.json  the attention maps' values (written by write_map_values below)
// Charts use Chart.js from Debian's libjs-chart.js, read when the page is written; without it the page shows the
// same numbers as tables. The attention maps are drawn by the page's own canvas code.
// Why Chart.js and not Vega: Debian's libjs-vega ships only the separate vega-* modules (no vega.js bundle), and
// each module's browser build starts with `global.vega = {}`, wiping the modules loaded before it, so they cannot
// be inlined as plain scripts without a bundler; libjs-chart.js is one self-contained UMD file (3.9.1, 195 KB).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "app/attention_maps.h"

namespace qkvlab::app {

// Where write_report looks for Chart.js by default (Debian's libjs-chart.js).
inline constexpr const char* kDefaultChartJs = "/usr/share/javascript/chart.js/chart.min.js";

struct ReportInfo {
  std::string path;       // <dir>/report.html
  int64_t bytes = 0;      // its size
  bool charts = false;    // Chart.js was inlined (false: the plain-table fallback)
  int64_t variants = 0, maps = 0;
};

// Reads the study folder `dir` and (re)writes dir/report.html atomically. chart_js: the Chart.js file to inline
// ("" for kDefaultChartJs); when it is absent or unusable the page falls back to tables. Throws qkvlab::Error with
// one line when results.json is missing or not a study's results.
ReportInfo write_report(const std::string& dir, const std::string& chart_js = "");

// `study` calls this at its end: writes the report, or says in one line on stderr why not (the study has succeeded
// either way); one line on stderr too when the page falls back to tables. Returns whether the page was written.
bool write_report_after_study(const std::string& dir);

// The values behind the attention-map PNGs, for the report: runs the model on each input and writes `path` (JSON)
// with, per input and per layer and head, the attention probabilities (query rows, key columns; 5 significant
// digits) and max |S - S^T| of the pre-softmax scores, as attention_maps computes it.
void write_map_values(TransformerModel& model, const std::vector<ModelInput>& inputs, uint64_t seed,
                      const std::string& path);

}  // namespace qkvlab::app
