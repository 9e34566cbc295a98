// Pictures: every test writes a PNG, reads it back with stb_image and looks at the pixels. Positions are found from
// the picture itself (runs and centroids of exact colours), not from the plotting code's layout.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "plot/plot.h"
#include "tensor/error.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace fs = std::filesystem;
using namespace qkvlab;
using plot::Rgb;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("qkvlab_plot_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

struct Image {
  int w = 0, h = 0;
  std::vector<unsigned char> px;
  Rgb at(int x, int y) const {
    const unsigned char* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    return {p[0], p[1], p[2]};
  }
};

Image load(const std::string& path) {
  Image im;
  int channels = 0;
  unsigned char* data = stbi_load(path.c_str(), &im.w, &im.h, &channels, 3);
  REQUIRE(data != nullptr);
  im.px.assign(data, data + static_cast<size_t>(im.w) * im.h * 3);
  stbi_image_free(data);
  return im;
}

bool same(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
bool yellowish(Rgb c) { return c.r > 200 && c.g > 200 && c.b < 100; }
bool dark_blue(Rgb c) { return c.b > c.r + 30 && c.b > c.g + 30 && c.r < 60 && c.g < 60; }

// Pixels of exactly colour c: how many, and their centroid.
struct Blob {
  long long count = 0;
  double cx = 0, cy = 0;
  int x0 = 1 << 30, x1 = -1, y0 = 1 << 30, y1 = -1;
};
Blob find(const Image& im, Rgb c) {
  Blob b;
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w; ++x)
      if (same(im.at(x, y), c)) {
        ++b.count, b.cx += x, b.cy += y;
        b.x0 = std::min(b.x0, x), b.x1 = std::max(b.x1, x), b.y0 = std::min(b.y0, y), b.y1 = std::max(b.y1, y);
      }
  if (b.count) b.cx /= b.count, b.cy /= b.count;
  return b;
}

// The longest run of colour c along row y (or column x): [start, start + length).
struct Run {
  int start = 0, length = 0;
};
Run longest_run_in_row(const Image& im, int y, Rgb c) {
  Run best, cur;
  for (int x = 0; x < im.w; ++x) {
    if (same(im.at(x, y), c)) {
      if (cur.length == 0) cur.start = x;
      ++cur.length;
      if (cur.length > best.length) best = cur;
    } else {
      cur.length = 0;
    }
  }
  return best;
}
Run longest_run_in_col(const Image& im, int x, Rgb c) {
  Run best, cur;
  for (int y = 0; y < im.h; ++y) {
    if (same(im.at(x, y), c)) {
      if (cur.length == 0) cur.start = y;
      ++cur.length;
      if (cur.length > best.length) best = cur;
    } else {
      cur.length = 0;
    }
  }
  return best;
}

long long count_dark(const Image& im) {  // text ink
  long long n = 0;
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w; ++x) {
      const Rgb c = im.at(x, y);
      n += c.r < 40 && c.g < 40 && c.b < 40;
    }
  return n;
}

double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

template <class F>
void require_throws_naming(F&& f, const std::string& path) {
  REQUIRE_THROWS_AS(f(), Error);
  REQUIRE_THROWS_WITH(f(), Catch::Contains(path));
}

}  // namespace

TEST_CASE("plot: the colour scale runs dark blue -> green -> yellow, brighter all the way; NaN is grey", "[plot]") {
  REQUIRE(dark_blue(plot::colormap(0.0f)));
  REQUIRE(yellowish(plot::colormap(1.0f)));
  const Rgb mid = plot::colormap(0.5f);
  REQUIRE(mid.g > mid.r);  // teal/green in the middle
  double prev = -1;
  for (int i = 0; i <= 64; ++i) {
    const double l = luminance(plot::colormap(i / 64.0f));
    REQUIRE(l > prev);
    prev = l;
  }
  REQUIRE(same(plot::colormap(-3.0f), plot::colormap(0.0f)));
  REQUIRE(same(plot::colormap(7.0f), plot::colormap(1.0f)));
  const Rgb nan = plot::colormap(NAN);
  REQUIRE((nan.r == nan.g && nan.g == nan.b));
  REQUIRE(plot::palette_size() >= 10);
  for (size_t i = 0; i < plot::palette_size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const Rgb a = plot::series_colour(i), b = plot::series_colour(j);
      const int d = std::abs(a.r - b.r) + std::abs(a.g - b.g) + std::abs(a.b - b.b);
      REQUIRE(d > 60);
    }
}

TEST_CASE("plot: a 64x64 heatmap is at least 512 px across with vmax yellow and vmin dark blue in the right cells",
          "[plot]") {
  TempDir tmp;
  const int n = 64, r_hot = 5, c_hot = 40;
  std::vector<float> v(n * n, 0.0f);
  v[r_hot * n + c_hot] = 1.0f;
  plot::HeatmapOptions o;
  o.title = "one hot cell";
  const std::string path = tmp.file("map64.png");
  plot::write_heatmap(path, v, n, n, o);
  const Image im = load(path);
  REQUIRE(im.w >= 512);
  REQUIRE(im.h >= 512);

  // The map is the long dark-blue run through the picture's middle (row 32's cells are all vmin).
  const Rgb lo = plot::colormap(0.0f);
  const Blob blue = find(im, lo);
  const int mid_y = (blue.y0 + blue.y1) / 2;
  const Run row = longest_run_in_row(im, mid_y, lo);
  const Run col = longest_run_in_col(im, row.start + row.length / 4, lo);  // column 16: all vmin
  REQUIRE(row.length >= 512);
  REQUIRE(col.length >= 512);
  REQUIRE(row.length == col.length);  // square cells
  const double cell = row.length / double(n);
  auto centre = [&](int r, int c) {
    return im.at(row.start + static_cast<int>((c + 0.5) * cell), col.start + static_cast<int>((r + 0.5) * cell));
  };
  REQUIRE(yellowish(centre(r_hot, c_hot)));
  REQUIRE(dark_blue(centre(c_hot, r_hot)));  // the transposed cell is not hot
  REQUIRE(dark_blue(centre(r_hot, c_hot - 1)));
  REQUIRE(dark_blue(centre(r_hot + 1, c_hot)));
  REQUIRE(dark_blue(centre(0, 0)));
  REQUIRE(dark_blue(centre(n - 1, n - 1)));
}

TEST_CASE("plot: a 2x2 heatmap puts queries top-to-bottom and keys left-to-right; NaN is grey; values clamp",
          "[plot]") {
  TempDir tmp;
  // [[vmin, vmax], [mid, NaN]], with values beyond the range that must clamp.
  const std::vector<float> v = {-5.0f, 9.0f, 0.5f, NAN};
  plot::HeatmapOptions o;
  o.annotate = false;
  o.min_size = 300;
  const std::string path = tmp.file("map2.png");
  plot::write_heatmap(path, v, 2, 2, o);
  const Image im = load(path);

  const Blob tl = find(im, plot::colormap(0.0f)), tr = find(im, plot::colormap(1.0f)),
             bl = find(im, plot::colormap(0.5f)), br = find(im, plot::colormap(NAN));
  const long long cell_area = 150 * 150;
  for (const Blob* b : {&tl, &tr, &bl, &br}) REQUIRE(b->count >= cell_area);
  REQUIRE(br.count < cell_area + 2000);  // grey is the NaN cell only
  // rows: top row above bottom row; columns: left column left of right column
  REQUIRE(tr.cx > tl.cx + 100);
  REQUIRE(std::abs(tr.cy - tl.cy) < 10);
  REQUIRE(bl.cy > tl.cy + 100);
  REQUIRE(std::abs(bl.cx - tl.cx) < 10);
  REQUIRE(br.cx > bl.cx + 100);
  REQUIRE(br.cy > tr.cy + 100);
}

TEST_CASE("plot: heatmap cell values, tick labels and the colour range", "[plot]") {
  TempDir tmp;
  const std::vector<float> v = {0.1f, 0.9f, 0.4f, 0.6f};
  plot::HeatmapOptions o;
  o.x_label = o.y_label = "";
  o.annotate = false;
  plot::write_heatmap(tmp.file("plain.png"), v, 2, 2, o);
  const long long plain = count_dark(load(tmp.file("plain.png")));

  o.annotate = true;
  plot::write_heatmap(tmp.file("annotated.png"), v, 2, 2, o);
  const Image annotated = load(tmp.file("annotated.png"));
  REQUIRE(count_dark(annotated) > plain + 100);  // "0.90" and "0.60" in dark ink on the bright cells

  o.annotate = false;
  o.row_labels = {"a", "b"};
  o.col_labels = {"c", "d"};
  plot::write_heatmap(tmp.file("labels.png"), v, 2, 2, o);
  const Image labelled = load(tmp.file("labels.png"));
  REQUIRE(count_dark(labelled) > plain + 100);
  REQUIRE(labelled.w > load(tmp.file("plain.png")).w);  // row labels take room on the left

  // Cells too small for text: labels are left out, nothing breaks.
  const int n = 200;
  std::vector<float> big(n * n, 0.5f);
  plot::HeatmapOptions ob;
  ob.x_label = ob.y_label = "";
  plot::write_heatmap(tmp.file("big_plain.png"), big, n, n, ob);
  for (int i = 0; i < n; ++i) ob.row_labels.push_back(std::to_string(i)), ob.col_labels.push_back("c");
  plot::write_heatmap(tmp.file("big_labels.png"), big, n, n, ob);
  REQUIRE(count_dark(load(tmp.file("big_labels.png"))) == count_dark(load(tmp.file("big_plain.png"))));

  // A NaN range is taken from the data: the largest value is then yellow.
  plot::HeatmapOptions oa;
  oa.vmin = NAN, oa.vmax = NAN;
  oa.annotate = false;
  plot::write_heatmap(tmp.file("auto.png"), {10.0f, 20.0f, 30.0f, 40.0f}, 2, 2, oa);
  const Image autoscaled = load(tmp.file("auto.png"));
  REQUIRE(find(autoscaled, plot::colormap(1.0f)).count > 100 * 100);
  REQUIRE(find(autoscaled, plot::colormap(0.0f)).count > 100 * 100);
}

TEST_CASE("plot: bad sizes and unwritable paths throw naming the path", "[plot]") {
  TempDir tmp;
  const std::string ok = tmp.file("x.png");
  require_throws_naming([&] { plot::write_heatmap(ok, std::vector<float>(5), 2, 3, {}); }, ok);
  require_throws_naming([&] { plot::write_heatmap(ok, {}, 0, 3, {}); }, ok);
  plot::HeatmapOptions o;
  o.row_labels = {"a"};
  require_throws_naming([&] { plot::write_heatmap(ok, std::vector<float>(4), 2, 2, o); }, ok);
  REQUIRE_FALSE(fs::exists(ok));

  const std::string bad = "/nonexistent-qkvlab-dir/sub/map.png";
  require_throws_naming([&] { plot::write_heatmap(bad, std::vector<float>(4), 2, 2, {}); }, bad);
  const std::vector<plot::Series> s = {{"a", {0, 1}, {1, 2}}};
  require_throws_naming([&] { plot::write_line_chart(bad, s, {}); }, bad);

  require_throws_naming([&] { plot::write_line_chart(ok, {{"a", {0, 1, 2}, {1, 2}}}, {}); }, ok);
}

TEST_CASE("plot: a line chart shows every series in its own colour", "[plot]") {
  TempDir tmp;
  plot::Series a{"QKV", {}, {}}, b{"QK", {}, {}};
  for (int t = 0; t <= 100; ++t) {
    a.x.push_back(t), a.y.push_back(2.0 * std::exp(-t / 30.0) + 0.5);
    b.x.push_back(t), b.y.push_back(2.0 * std::exp(-t / 50.0) + 0.7);
  }
  plot::ChartOptions o;
  o.title = "loss";
  plot::write_line_chart(tmp.file("two.png"), {a, b}, o);
  const Image two = load(tmp.file("two.png"));
  REQUIRE(two.w == 900);
  REQUIRE(two.h == 560);
  const Blob ca = find(two, plot::series_colour(0)), cb = find(two, plot::series_colour(1));
  REQUIRE(ca.count > 300);
  REQUIRE(cb.count > 300);
  REQUIRE(ca.x1 - ca.x0 > 600);  // the lines cross the plot
  REQUIRE(cb.x1 - cb.x0 > 600);

  plot::write_line_chart(tmp.file("one.png"), {a}, o);
  const Image one = load(tmp.file("one.png"));
  REQUIRE(find(one, plot::series_colour(0)).count > 300);
  REQUIRE(find(one, plot::series_colour(1)).count == 0);

  // A flat line is horizontal across the plot.
  plot::Series flat{"flat", {}, std::vector<double>(50, 3.0)};
  plot::write_line_chart(tmp.file("flat.png"), {flat}, o);
  const Blob cf = find(load(tmp.file("flat.png")), plot::series_colour(0));
  REQUIRE(cf.x1 - cf.x0 > 600);
}

TEST_CASE("plot: log_y draws exponential data as a straight line", "[plot]") {
  TempDir tmp;
  plot::Series s{"exp", {}, {}};
  for (int i = 0; i <= 200; ++i) s.x.push_back(i), s.y.push_back(std::pow(10.0, i / 50.0));  // 1 .. 10^4
  s.y.push_back(-1.0), s.x.push_back(201);  // skipped on a log scale
  s.y.push_back(0.0), s.x.push_back(202);
  // Fraction of the line's columns whose mean y lies within 3 px of the chord between its ends.
  auto straightness = [&](bool log_y) {
    plot::ChartOptions o;
    o.log_y = log_y;
    const std::string path = tmp.file(log_y ? "log.png" : "lin.png");
    plot::write_line_chart(path, {s}, o);
    const Image im = load(path);
    const Rgb c = plot::series_colour(0);
    std::vector<double> mean_y(im.w, -1);
    for (int x = 0; x < im.w; ++x) {
      double sum = 0;
      int k = 0;
      for (int y = 0; y < im.h; ++y)
        if (same(im.at(x, y), c)) sum += y, ++k;
      if (k) mean_y[x] = sum / k;
    }
    // the ends of the curve: leftmost and rightmost columns with line pixels, 5 px in
    int xa = 0, xb = im.w - 1;
    while (xa < im.w && mean_y[xa] < 0) ++xa;
    while (xb > 0 && mean_y[xb] < 0) --xb;
    xa += 5, xb -= 5;
    int good = 0, total = 0;
    for (int x = xa; x <= xb; ++x) {
      if (mean_y[x] < 0) continue;
      const double chord = mean_y[xa] + (mean_y[xb] - mean_y[xa]) * (x - xa) / double(xb - xa);
      ++total, good += std::abs(mean_y[x] - chord) < 3.0;
    }
    return total ? good / double(total) : 0.0;
  };
  REQUIRE(straightness(true) > 0.85);
  REQUIRE(straightness(false) < 0.5);
}

TEST_CASE("plot: line charts survive empty series, one point, NaN and Inf, log_y of non-positive values", "[plot]") {
  TempDir tmp;
  plot::ChartOptions o;
  plot::write_line_chart(tmp.file("none.png"), {}, o);
  REQUIRE(load(tmp.file("none.png")).w == 900);
  plot::write_line_chart(tmp.file("empty.png"), {{"empty", {}, {}}}, o);
  REQUIRE(load(tmp.file("empty.png")).h == 560);

  plot::write_line_chart(tmp.file("point.png"), {{"point", {7}, {1.5}}}, o);
  const Blob dot = find(load(tmp.file("point.png")), plot::series_colour(0));
  REQUIRE(dot.count > 4);  // the dot (and the legend sample)

  const std::vector<plot::Series> bad = {{"nan", {0, 1, 2, 3}, {NAN, INFINITY, -INFINITY, NAN}},
                                         {"mixed", {0, 1, NAN, 3, 4}, {1, NAN, 2, 3, 4}}};
  plot::write_line_chart(tmp.file("bad.png"), bad, o);
  REQUIRE(find(load(tmp.file("bad.png")), plot::series_colour(1)).count > 50);

  o.log_y = true;
  plot::write_line_chart(tmp.file("neg.png"), {{"neg", {}, {-1, 0, -2}}, {"pos", {}, {-1, 0.1, 10, 1000}}}, o);
  REQUIRE(find(load(tmp.file("neg.png")), plot::series_colour(1)).count > 50);

  plot::ChartOptions tiny;
  tiny.width = 10, tiny.height = -4;  // clamped to something drawable
  tiny.title = std::string(500, 'T');
  plot::write_line_chart(tmp.file("tiny.png"), {{std::string(300, 'L'), {}, {1, 2}}}, tiny);
  REQUIRE(load(tmp.file("tiny.png")).w > 0);
}
