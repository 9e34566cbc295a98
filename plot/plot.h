// Pictures: PNG heatmaps (attention maps) and line charts (loss curves, benchmark sweeps), drawn from scratch into
// an RGB buffer with a built-in 5x7 bitmap font and written through stb_image_write. A library of its own below app/
// (it needs only tensor/error.h), used by the report, attention maps, study and bench commands.
// Every function throws qkvlab::Error naming the path when it cannot write the file or when its inputs disagree
// (values.size() != rows*cols, labels.size() != row count, a series with x.size() != y.size()).
#pragma once
#include <string>
#include <vector>

namespace qkvlab::plot {

// A heatmap of values (rows x cols, row-major), e.g. an attention map: query rows top-to-bottom, key columns
// left-to-right. Colour scale dark blue -> green -> yellow over vmin..vmax (values outside are clamped, NaN is grey;
// a NaN vmin or vmax is taken from the finite data). The larger side of the map is at least min_size pixels (square
// cells); a title line sits above, a colour bar with its min/max on the right, axis titles below and on the left.
// row_labels/col_labels (one per row/column, or empty) are drawn only when the cells are big enough to hold them;
// cell values are printed inside the cells when they fit and `annotate` is set.
struct HeatmapOptions {
  std::string title;
  float vmin = 0.0f, vmax = 1.0f;
  int min_size = 512;
  std::string x_label = "key", y_label = "query";
  std::vector<std::string> row_labels, col_labels;
  bool annotate = true;
};
void write_heatmap(const std::string& path, const std::vector<float>& values, int rows, int cols,
                   const HeatmapOptions& options);

// One line of a line chart. An empty x means 0, 1, 2, ... Non-finite points (and non-positive y on a log scale)
// are skipped and break the line.
struct Series {
  std::string label;
  std::vector<double> x, y;
};
struct ChartOptions {
  std::string title, x_label = "step", y_label = "loss";
  bool log_y = false;
  int width = 900, height = 560;
};

// Several series in distinct colours (10 colours, then the same colours dashed), nice round tick labels, axis
// titles, a title and a legend placed in the emptiest corner of the plot.
void write_line_chart(const std::string& path, const std::vector<Series>& series, const ChartOptions& options);

// The heatmap colour of t in [0, 1] (clamped; NaN gives the grey of missing cells), as 0..255 RGB.
struct Rgb {
  unsigned char r, g, b;
};
Rgb colormap(float t);
// The i-th series colour (cycles after palette_size()).
Rgb series_colour(size_t i);
size_t palette_size();

}  // namespace qkvlab::plot
