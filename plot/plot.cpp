// Pictures drawn from scratch: an RGB canvas, a hand-made 5x7 bitmap font (with 2 rows of descenders), antialiased
// thick polylines, nice tick numbers, and stb_image_write for the PNG encoding. See plot.h for the API.
#include "plot/plot.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <zlib.h>

#include "tensor/error.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
// PNG's deflate by the system's zlib (a dependency already: the gzipped image sets) instead of stb's own
// compressor, which was three quarters of a chart's time: a study's loss chart 12.5 -> 7.6 ms, 38 -> 33 KB.
// stb frees what this returns with free().
static unsigned char* zlib_deflate(unsigned char* data, int len, int* out_len, int level) {
  uLongf size = compressBound(static_cast<uLong>(len));
  auto* out = static_cast<unsigned char*>(std::malloc(size));
  if (!out) return nullptr;
  if (compress2(out, &size, data, static_cast<uLong>(len), level) != Z_OK) {
    std::free(out);
    return nullptr;
  }
  *out_len = static_cast<int>(size);
  return out;
}
#define STBIW_ZLIB_COMPRESS zlib_deflate
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace qkvlab::plot {
namespace {

// ------------------------------------------------------------------------------------------------------------------
// The font: ASCII 32..126 plus 127 = a visible space (an open box, for space tokens in attention labels),
// 128 = newline (a return arrow) and 129 = tab (an arrow).
// Each glyph is 9 rows of 5 bits (bit 4 = leftmost column): rows 0..6 are the cap height, the baseline is under
// row 6, rows 7..8 hold the descenders of g j p q y , ;. Drawn at integer scales (2 everywhere in the pictures).
constexpr int kGlyphW = 5, kGlyphRows = 9, kCapH = 7, kAdvance = 6;
constexpr unsigned char kFont[98][kGlyphRows] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00},  // !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // "
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00, 0x00},  // #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00, 0x00},  // $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00},  // %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00, 0x00},  // &
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00},  // )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08, 0x00},  // ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00},  // /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00},  // 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // 2
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00},  // 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00},  // 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00},  // 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00},  // 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00},  // 9
    {0x00, 0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // :
    {0x00, 0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00},  // ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00},  // <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00},  // >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00},  // ?
    {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E, 0x00, 0x00},  // @
    {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x00, 0x00},  // A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00},  // B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00},  // D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00},  // E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00},  // G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00},  // H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00},  // L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00},  // N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00},  // P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00},  // Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00},  // R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00},  // S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00},  // W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00},  // X
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00, 0x00},  // Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00},  // Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00, 0x00},  // [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00, 0x00},  // backslash
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00, 0x00},  // ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00},  // _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // `
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00},  // a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00},  // b
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00},  // c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00},  // d
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00},  // e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00},  // f
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // h
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00},  // k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00},  // l
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00},  // m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00},  // n
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00},  // o
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10},  // p
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01},  // q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00},  // r
    {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00},  // s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00},  // t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00},  // u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00},  // v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00},  // w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00},  // x
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00},  // z
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00},  // {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00},  // |
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00},  // }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00},  // ~
    {0x00, 0x00, 0x00, 0x00, 0x11, 0x11, 0x1F, 0x00, 0x00},  // 127: visible space (open box)
    {0x01, 0x01, 0x05, 0x09, 0x1F, 0x08, 0x04, 0x00, 0x00},  // 128: newline (return arrow)
    {0x00, 0x00, 0x04, 0x02, 0x1F, 0x02, 0x04, 0x00, 0x00},  // 129: tab (right arrow)
};
constexpr char kVisibleSpace = 127, kNewline = static_cast<char>(128), kTab = static_cast<char>(129);

constexpr int kScale = 2;                                  // text scale used throughout
constexpr int kTextH = kCapH * kScale;                     // 14 px cap height
constexpr int kTextFullH = kGlyphRows * kScale;            // 18 px with descenders
constexpr Rgb kWhite{255, 255, 255}, kInk{25, 25, 25}, kAxis{70, 70, 70}, kGrid{228, 228, 228};
constexpr Rgb kNanGrey{160, 160, 160};
constexpr int kMaxSide = 8192;     // heatmaps
constexpr int kMaxChartSide = 4096;  // line charts
constexpr int kInset = 5;  // data stays this many pixels inside the plot frame

int text_width(const std::string& s, int scale = kScale) {
  return s.empty() ? 0 : static_cast<int>(s.size()) * kAdvance * scale - scale;
}

// Only printable ASCII is drawn. Newline and tab get arrow glyphs, other control bytes '?', a UTF-8 sequence one
// '?'. A label that is exactly one space (a space token) is drawn as an open box so it is visible.
std::string sanitize(const std::string& s) {
  if (s == " ") return std::string(1, kVisibleSpace);
  std::string out;
  for (unsigned char ch : s) {
    if (ch == '\n') out += kNewline;
    else if (ch == '\t') out += kTab;
    else if (ch >= 32 && ch < 127) out += static_cast<char>(ch);
    else if (ch >= 0x80 && ch < 0xC0) continue;  // UTF-8 continuation byte
    else out += '?';
  }
  return out;
}

// Shortens s with "..." until it is at most max_px wide at the given scale ("" if not even one letter fits).
std::string fit(const std::string& s, int max_px, int scale = kScale) {
  if (text_width(s, scale) <= max_px) return s;
  const int max_chars = (max_px + scale) / (kAdvance * scale);
  if (max_chars >= 4) return s.substr(0, max_chars - 3) + "...";
  if (max_chars >= 1) return s.substr(0, max_chars);
  return "";
}

std::string clean(const std::string& s, size_t max_chars) {
  std::string t = sanitize(s);
  if (t.size() > max_chars) t = t.substr(0, max_chars > 3 ? max_chars - 3 : max_chars) + (max_chars > 3 ? "..." : "");
  return t;
}

// ------------------------------------------------------------------------------------------------------------------
// The canvas: 8-bit RGB, row-major, origin top left.
struct Canvas {
  int w, h;
  std::vector<unsigned char> px;
  Canvas(int width, int height) : w(width), h(height), px(static_cast<size_t>(width) * height * 3, 255) {}

  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    unsigned char* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void blend(int x, int y, Rgb c, float a) {
    if (x < 0 || y < 0 || x >= w || y >= h || !(a > 0.0f)) return;
    a = std::min(a, 1.0f);
    unsigned char* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = static_cast<unsigned char>(std::lround(p[0] + (c.r - p[0]) * a));
    p[1] = static_cast<unsigned char>(std::lround(p[1] + (c.g - p[1]) * a));
    p[2] = static_cast<unsigned char>(std::lround(p[2] + (c.b - p[2]) * a));
  }
  // Half-open rectangle [x0, x1) x [y0, y1), clipped.
  void fill(int x0, int y0, int x1, int y1, Rgb c) {
    x0 = std::max(x0, 0), y0 = std::max(y0, 0), x1 = std::min(x1, w), y1 = std::min(y1, h);
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) set(x, y, c);
  }
  void hline(int x0, int x1, int y, Rgb c) { fill(std::min(x0, x1), y, std::max(x0, x1) + 1, y + 1, c); }
  void vline(int x, int y0, int y1, Rgb c) { fill(x, std::min(y0, y1), x + 1, std::max(y0, y1) + 1, c); }
  void frame(int x0, int y0, int x1, int y1, Rgb c) {  // inclusive corners
    hline(x0, x1, y0, c), hline(x0, x1, y1, c), vline(x0, y0, y1, c), vline(x1, y0, y1, c);
  }
};

// Draws s with its top-left corner (of the cap height) at (x, y). With up=true the text is turned 90 degrees
// counter-clockwise and reads bottom to top: (x, y) is then the left end of the glyph tops... i.e. the text starts at
// the bottom y and the glyphs' tops face x (the block spans x .. x + 9*scale).
void draw_text(Canvas& cv, int x, int y, const std::string& s, Rgb c, int scale = kScale, bool up = false) {
  int pen = 0;
  for (char ch : s) {
    const int code = static_cast<unsigned char>(ch);
    const unsigned char* glyph = kFont[(code >= 32 && code <= 129) ? code - 32 : '?' - 32];
    for (int row = 0; row < kGlyphRows; ++row)
      for (int col = 0; col < kGlyphW; ++col) {
        if (!(glyph[row] & (0x10 >> col))) continue;
        for (int dy = 0; dy < scale; ++dy)
          for (int dx = 0; dx < scale; ++dx) {
            const int u = pen + col * scale + dx, v = row * scale + dy;  // along the text, down the glyph
            if (up) cv.set(x + v, y - 1 - u, c);
            else cv.set(x + u, y + v, c);
          }
      }
    pen += kAdvance * scale;
  }
}
enum class Align { left, center, right };
void draw_text_at(Canvas& cv, int x, int y, const std::string& s, Rgb c, Align a, int scale = kScale) {
  const int w = text_width(s, scale);
  draw_text(cv, a == Align::left ? x : a == Align::center ? x - w / 2 : x - w, y, s, c, scale);
}
// Vertical text centred on y_mid, glyph tops at x.
void draw_text_up_centered(Canvas& cv, int x, int y_mid, const std::string& s, Rgb c) {
  draw_text(cv, x, y_mid + text_width(s) / 2, s, c, kScale, true);
}

// Antialiased polyline coverage over the clip rectangle [cx0, cx1) x [cy0, cy1): each pixel keeps the largest
// coverage (0..255) by any segment's capsule of half-width hw, so joints are not painted twice. Row spans keep the
// cost at about length x width per segment.
struct Coverage {
  int cx0, cy0, cx1, cy1;
  std::vector<unsigned char> a;  // (cy1 - cy0) rows of (cx1 - cx0)
  Coverage(int x0, int y0, int x1, int y1)
      : cx0(x0), cy0(y0), cx1(std::max(x0, x1)), cy1(std::max(y0, y1)),
        a(static_cast<size_t>(cx1 - cx0) * (cy1 - cy0), 0) {}
  unsigned char at(int x, int y) const {
    if (x < cx0 || y < cy0 || x >= cx1 || y >= cy1) return 0;
    return a[static_cast<size_t>(y - cy0) * (cx1 - cx0) + (x - cx0)];
  }

  void segment(double x0, double y0, double x1, double y1, double hw) {
    const double r = hw + 1.0;
    const int ylo = std::max(cy0, static_cast<int>(std::floor(std::min(y0, y1) - r)));
    const int yhi = std::min(cy1 - 1, static_cast<int>(std::ceil(std::max(y0, y1) + r)));
    const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int py = ylo; py <= yhi; ++py) {
      const double yc = py + 0.5;
      double t0 = 0.0, t1 = 1.0;  // the part of the segment within the band |y - yc| <= r
      if (std::abs(dy) > 1e-12) {
        double ta = (yc - r - y0) / dy, tb = (yc + r - y0) / dy;
        if (ta > tb) std::swap(ta, tb);
        t0 = std::max(0.0, ta), t1 = std::min(1.0, tb);
        if (t0 > t1) continue;
      } else if (std::abs(yc - y0) > r) {
        continue;
      }
      const double xa = x0 + dx * t0, xb = x0 + dx * t1;
      const int xlo = std::max(cx0, static_cast<int>(std::floor(std::min(xa, xb) - r)));
      const int xhi = std::min(cx1 - 1, static_cast<int>(std::ceil(std::max(xa, xb) + r)));
      for (int px = xlo; px <= xhi; ++px) {
        const double xc = px + 0.5;
        double t = len2 > 0 ? ((xc - x0) * dx + (yc - y0) * dy) / len2 : 0.0;
        t = std::clamp(t, 0.0, 1.0);
        const double ex = x0 + dx * t - xc, ey = y0 + dy * t - yc;
        const double cov = std::clamp(hw + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
        unsigned char& dst = a[static_cast<size_t>(py - cy0) * (cx1 - cx0) + (px - cx0)];
        dst = std::max(dst, static_cast<unsigned char>(std::lround(cov * 255.0)));
      }
    }
  }
  void dot(double x, double y, double radius) { segment(x, y, x, y, radius); }
  void paint(Canvas& cv, Rgb c) const {
    for (int y = cy0; y < cy1; ++y)
      for (int x = cx0; x < cx1; ++x)
        if (const unsigned char v = at(x, y)) cv.blend(x, y, c, v / 255.0f);
  }
};

// ------------------------------------------------------------------------------------------------------------------
// Numbers.

std::string printf_str(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}
// "1e-05" -> "1e-5", "1e+06" -> "1e6"
std::string tidy_exponent(std::string s) {
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  bool neg = false;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) neg = exp[0] == '-', exp = exp.substr(1);
  while (exp.size() > 1 && exp[0] == '0') exp = exp.substr(1);
  return mant + "e" + (neg ? "-" : "") + exp;
}
// A value with up to `sig` significant digits, SI suffix (k, M, G) from 10^4 on, exponent below 10^-3.
std::string fmt_value(double v, int sig = 4) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  const double a = std::abs(v);
  if (a == 0.0) return "0";
  // fixed notation with `sig` significant digits, trailing zeros dropped
  auto fixed_sig = [sig](double x) {
    const int decimals = std::clamp(sig - 1 - static_cast<int>(std::floor(std::log10(std::abs(x)))), 0, 12);
    std::string s = printf_str(("%." + std::to_string(decimals) + "f").c_str(), x);
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  };
  if (a >= 1e4 && a < 1e15) {
    const char* suffix = a >= 1e12 ? "T" : a >= 1e9 ? "G" : a >= 1e6 ? "M" : "k";
    const double div = a >= 1e12 ? 1e12 : a >= 1e9 ? 1e9 : a >= 1e6 ? 1e6 : 1e3;
    return fixed_sig(v / div) + suffix;
  }
  if (a >= 1e-3 && a < 1e4) return fixed_sig(v);
  return tidy_exponent(printf_str(("%." + std::to_string(sig) + "g").c_str(), v));
}

// Nice tick step for a span and a wished number of intervals: 1, 2 or 5 times a power of ten.
double nice_step(double span, int target) {
  if (!(span > 0) || !std::isfinite(span)) return 1.0;
  const double raw = span / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double n = raw / mag;
  return (n < 1.5 ? 1.0 : n < 3.0 ? 2.0 : n < 7.0 ? 5.0 : 10.0) * mag;
}
std::vector<double> linear_ticks(double lo, double hi, double step) {
  std::vector<double> t;
  if (!(step > 0)) return t;
  const double k0 = std::ceil(lo / step - 1e-9), k1 = std::floor(hi / step + 1e-9);
  for (double k = k0; k <= k1 && t.size() < 100; k += 1.0) t.push_back(k * step == 0.0 ? 0.0 : k * step);
  return t;
}
// Labels of ticks a step apart: all with the same number of decimals, SI suffixes for big numbers.
std::vector<std::string> linear_labels(const std::vector<double>& ticks, double step) {
  double amax = 0;
  for (double t : ticks) amax = std::max(amax, std::abs(t));
  std::vector<std::string> out;
  const char* suffix = "";
  double div = 1.0;
  if (amax >= 1e12) suffix = "T", div = 1e12;
  else if (amax >= 1e9) suffix = "G", div = 1e9;
  else if (amax >= 1e6) suffix = "M", div = 1e6;
  else if (amax >= 1e4) suffix = "k", div = 1e3;
  const bool sci = amax > 0 && amax < 1e-3;
  for (double t : ticks) {
    if (t == 0.0) {
      out.push_back("0");
    } else if (sci) {  // 1.2e-4, 1.0e-4, 8e-5: as many mantissa digits as the step needs
      const int e = static_cast<int>(std::floor(std::log10(std::abs(t)) + 1e-9));
      const int decimals = std::clamp(e - static_cast<int>(std::floor(std::log10(step) + 1e-9)), 0, 6);
      out.push_back(tidy_exponent(printf_str(("%." + std::to_string(decimals) + "e").c_str(), t)));
    } else {
      const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step / div) + 1e-9)), 0, 8);
      out.push_back(printf_str(("%." + std::to_string(decimals) + "f").c_str(), t / div) + suffix);
    }
  }
  return out;
}

// An axis: data range [lo, hi] (in log10 units when log), the ticks (data units) and their labels.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  std::vector<std::string> labels;
  std::vector<int> priority;  // labels that collide are dropped, higher numbers first (log axes: 1 < 2,5 < rest)
  double map(double v) const {  // 0..1 along the axis
    const double u = log ? std::log10(v) : v;
    return (u - lo) / (hi - lo);
  }
};

// Linear axis over data [lo, hi]. nice_bounds widens the range to the outer ticks; pad adds a margin first.
Axis linear_axis(double lo, double hi, int target, bool nice_bounds, double pad, bool keep_zero_floor) {
  Axis ax;
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) lo = 0, hi = 1;
  if (hi - lo <= 1e-12 * std::max(std::abs(lo), std::abs(hi)) || hi == lo) {
    const double d = lo == 0.0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= d, hi += d;
  }
  if (!std::isfinite(hi - lo)) lo /= 2, hi /= 2;  // absurdly large spans: keep the arithmetic finite
  const bool nonneg = lo >= 0;
  const double span = hi - lo;
  lo -= pad * span, hi += pad * span;
  if (keep_zero_floor && nonneg && lo < 0) lo = 0;
  const double step = nice_step(hi - lo, target);
  if (nice_bounds) {
    lo = std::floor(lo / step + 1e-9) * step;
    hi = std::ceil(hi / step - 1e-9) * step;
  }
  ax.lo = lo, ax.hi = hi;
  ax.ticks = linear_ticks(lo, hi, step);
  ax.labels = linear_labels(ax.ticks, step);
  return ax;
}

// Log axis over positive data [lo, hi]: decades, then 1-2-5, then 1..9 when the range is too short.
Axis log_axis(double lo, double hi) {
  Axis ax;
  ax.log = true;
  if (!(lo > 0) || !(hi > 0) || !std::isfinite(lo) || !std::isfinite(hi)) lo = 1, hi = 10;
  double a = std::log10(lo), b = std::log10(hi);
  if (b - a < 1e-9) a -= 0.3, b += 0.3;
  const double pad = 0.05 * (b - a);
  a -= pad, b += pad;
  ax.lo = a, ax.hi = b;
  static const std::vector<std::vector<int>> levels = {{1}, {1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}};
  for (const auto& mult : levels) {
    ax.ticks.clear();
    const int every = mult.size() == 1 ? std::max(1, static_cast<int>(std::ceil((b - a) / 8.0))) : 1;
    for (int d = static_cast<int>(std::floor(a)); d <= static_cast<int>(std::ceil(b)); ++d) {
      if (mult.size() == 1 && ((d % every) + every) % every != 0) continue;
      for (int m : mult) {
        const double v = m * std::pow(10.0, d), lv = std::log10(v);
        if (lv >= a - 1e-9 && lv <= b + 1e-9) ax.ticks.push_back(v);
      }
    }
    if (ax.ticks.size() >= (mult.size() == 1 ? 3u : 4u)) break;
  }
  if (ax.ticks.size() < 2) {  // less than a factor of ~1.2: linear ticks in data space
    const double vlo = std::pow(10.0, a), vhi = std::pow(10.0, b), step = nice_step(vhi - vlo, 4);
    ax.ticks = linear_ticks(vlo, vhi, step);
    ax.labels = linear_labels(ax.ticks, step);
    return ax;
  }
  for (double t : ax.ticks) {
    ax.labels.push_back(fmt_value(t, 3));
    const int m = static_cast<int>(std::lround(t / std::pow(10.0, std::floor(std::log10(t) + 1e-9))));
    ax.priority.push_back(m == 1 ? 0 : (m == 2 || m == 5) ? 1 : 2);
  }
  return ax;
}

// ------------------------------------------------------------------------------------------------------------------

// filter: -1 lets stb try its five per-line filters on every line and keep the best; 0 writes the lines as they
// are, which a line chart (flat colour) loses little to: a study's loss chart is 6 % larger and takes 13 ms instead
// of 29. A heatmap's colour ramp needs the filters (a third larger without).
void write_png(const std::string& path, const Canvas& cv, int filter) {
  if (path.empty()) fail("plot: cannot write a PNG to an empty path");
  // zlib's level 4: charts of flat colour compress almost as well as at higher levels. (With stb's own
  // compressor, now replaced, a study's loss chart took 35 ms at its default 8, and 12.5 ms at 4, which stb
  // raised to its lowest, 5.)
  stbi_write_png_compression_level = 4;
  stbi_write_force_png_filter = filter;
  errno = 0;
  if (!stbi_write_png(path.c_str(), cv.w, cv.h, 3, cv.px.data(), cv.w * 3)) {
    const int err = errno;
    fail("plot: cannot write PNG '", path, "'", err ? std::string(": ") + std::strerror(err) : std::string());
  }
}

void check_size(const std::string& path, long long w, long long h) {
  if (w <= 0 || h <= 0 || w > kMaxSide || h > kMaxSide)
    fail("plot: '", path, "': the picture would be ", w, "x", h, " pixels (at most ", kMaxSide, " per side)");
}

// The largest finite |y| etc. helpers.
bool usable(double x, double y, bool log_y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); }

// Lays out a chart frame: title, axis titles, y tick labels; returns the plot rectangle.
struct Frame {
  int x0, y0, x1, y1;  // plot area, inclusive-exclusive: [x0, x1) x [y0, y1)
  int inset;           // the data keeps this far from the frame
  // Pixel centre of axis position t in [0, 1] (y grows upwards).
  double px(double t) const { return x0 + inset + t * (x1 - 1 - 2 * inset - x0) + 0.5; }
  double py(double t) const { return y1 - 1 - inset - t * (y1 - 1 - 2 * inset - y0) + 0.5; }
};

int title_scale(const std::string& title, int width) {
  return text_width(title, 3) <= width - 40 ? 3 : kScale;
}

// Draws the title, the y axis (ticks, labels, grid) and the axis titles around a plot area whose left edge depends
// on the y labels. bottom_extra is the height below the plot reserved for the x tick labels.
Frame layout_and_draw_frame(Canvas& cv, const ChartOptions& o, const Axis& yax, int bottom_extra, int right_margin,
                            int inset) {
  const int M = 16;
  const std::string title = fit(sanitize(o.title), cv.w - 2 * M, title_scale(sanitize(o.title), cv.w));
  const int ts = title_scale(sanitize(o.title), cv.w);
  int top = M;
  if (!title.empty()) {
    draw_text_at(cv, cv.w / 2, top, title, kInk, Align::center, ts);
    top += kCapH * ts + 18;
  } else {
    top += 8;
  }
  int ylab_w = 0;
  for (const auto& l : yax.labels) ylab_w = std::max(ylab_w, text_width(l));
  const std::string ytitle = fit(sanitize(o.y_label), cv.h - 2 * M);
  const std::string xtitle = fit(sanitize(o.x_label), cv.w - 2 * M);
  Frame f;
  f.inset = inset;
  f.x0 = M + (ytitle.empty() ? 0 : kTextFullH + 12) + ylab_w + 10;
  f.x1 = cv.w - right_margin;
  f.y0 = top;
  f.y1 = cv.h - M - (xtitle.empty() ? 0 : kTextFullH + 8) - bottom_extra;
  if (f.x1 - f.x0 < 20) f.x1 = std::min(cv.w - 1, f.x0 + 20);
  if (f.y1 - f.y0 < 20) f.y1 = std::min(cv.h - 1, f.y0 + 20);

  // grid and y ticks; a label too close to one already placed is left out (its grid line stays), the labels of
  // higher priority (lower number) being placed first
  std::vector<int> placed;
  for (int pass = 0; pass < 3; ++pass)
    for (size_t i = 0; i < yax.ticks.size(); ++i) {
      const int prio = i < yax.priority.size() ? yax.priority[i] : 0;
      if (prio != pass) continue;
      const int py = static_cast<int>(std::floor(f.py(yax.map(yax.ticks[i]))));
      if (py < f.y0 || py >= f.y1) continue;
      cv.hline(f.x0, f.x1 - 1, py, kGrid);
      cv.hline(f.x0 - 5, f.x0 - 1, py, kAxis);
      bool clash = false;
      for (int q : placed) clash |= std::abs(q - py) < kTextFullH + 2;
      if (clash) continue;
      draw_text_at(cv, f.x0 - 8, py - kTextH / 2, yax.labels[i], kInk, Align::right);
      placed.push_back(py);
    }
  if (!ytitle.empty()) draw_text_up_centered(cv, M, (f.y0 + f.y1) / 2, ytitle, kInk);
  if (!xtitle.empty()) draw_text_at(cv, (f.x0 + f.x1) / 2, cv.h - M - kTextH, xtitle, kInk, Align::center);
  return f;
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------------
// Colours.

Rgb colormap(float t) {
  // Dark blue -> teal -> green -> yellow; CIELAB lightness rises by ~9.7 per anchor (13 -> 91), so equal steps in
  // value look like equal steps in brightness.
  static constexpr Rgb anchors[9] = {{18, 26, 88},   {30, 44, 120},  {36, 74, 140},  {32, 103, 148}, {26, 134, 142},
                                     {36, 166, 122}, {92, 194, 92},  {168, 215, 52}, {250, 231, 35}};
  if (std::isnan(t)) return kNanGrey;
  t = std::clamp(t, 0.0f, 1.0f) * 8.0f;
  const int i = std::min(static_cast<int>(t), 7);
  const float f = t - static_cast<float>(i);
  auto mix = [f](unsigned char a, unsigned char b) {
    return static_cast<unsigned char>(std::lround(a + (static_cast<float>(b) - a) * f));
  };
  return {mix(anchors[i].r, anchors[i + 1].r), mix(anchors[i].g, anchors[i + 1].g), mix(anchors[i].b, anchors[i + 1].b)};
}

namespace {
// Ten colours that stay apart for most eyes on white: blue, orange, green, red, purple, brown, pink, grey, olive,
// cyan.
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {100, 100, 100}, {188, 189, 34}, {23, 190, 207}};
constexpr size_t kPaletteSize = sizeof kPalette / sizeof kPalette[0];
}  // namespace

Rgb series_colour(size_t i) { return kPalette[i % kPaletteSize]; }
size_t palette_size() { return kPaletteSize; }

// ------------------------------------------------------------------------------------------------------------------
// Heatmap.

void write_heatmap(const std::string& path, const std::vector<float>& values, int rows, int cols,
                   const HeatmapOptions& o) {
  if (rows <= 0 || cols <= 0)
    fail("plot: heatmap '", path, "': rows and cols must be positive, got ", rows, "x", cols);
  if (values.size() != static_cast<size_t>(rows) * static_cast<size_t>(cols))
    fail("plot: heatmap '", path, "': ", rows, "x", cols, " = ", static_cast<size_t>(rows) * cols,
         " cells but ", values.size(), " values");
  if (!o.row_labels.empty() && o.row_labels.size() != static_cast<size_t>(rows))
    fail("plot: heatmap '", path, "': ", o.row_labels.size(), " row labels for ", rows, " rows");
  if (!o.col_labels.empty() && o.col_labels.size() != static_cast<size_t>(cols))
    fail("plot: heatmap '", path, "': ", o.col_labels.size(), " column labels for ", cols, " columns");

  // Colour range; NaN bounds come from the data.
  float vmin = o.vmin, vmax = o.vmax;
  if (std::isnan(vmin) || std::isnan(vmax)) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (float v : values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (std::isnan(vmin)) vmin = lo;
    if (std::isnan(vmax)) vmax = hi;
  }
  auto to_unit = [&](float v) -> float {
    if (std::isnan(v)) return v;
    if (!(vmax > vmin)) return v > vmin ? 1.0f : v < vmin ? 0.0f : 0.5f;
    return std::clamp((v - vmin) / (vmax - vmin), 0.0f, 1.0f);
  };

  // Cell size: the larger side reaches min_size; labelled maps of up to ~66 tokens get cells tall enough for text.
  const int min_size = std::clamp(o.min_size, 1, kMaxSide);
  const int n = std::max(rows, cols);
  int c = std::max(1, (min_size + n - 1) / n);
  const bool have_labels = !o.row_labels.empty() || !o.col_labels.empty();
  constexpr int kLabelCell = kTextFullH;  // 18 px: a label glyph with its descender
  if (have_labels && c < kLabelCell && static_cast<long long>(n) * kLabelCell <= 1200) c = kLabelCell;
  const long long map_w = static_cast<long long>(cols) * c, map_h = static_cast<long long>(rows) * c;
  check_size(path, map_w, map_h);

  // Labels: row labels to the left (right-aligned), column labels below (horizontal if they fit, else turned).
  std::vector<std::string> rl, cl;
  if (!o.row_labels.empty() && c >= kTextH)
    for (const auto& s : o.row_labels) rl.push_back(clean(s, 10));
  if (!o.col_labels.empty() && c >= kTextH)
    for (const auto& s : o.col_labels) cl.push_back(clean(s, 10));
  int rl_w = 0, cl_max_w = 0;
  for (const auto& s : rl) rl_w = std::max(rl_w, text_width(s));
  for (const auto& s : cl) cl_max_w = std::max(cl_max_w, text_width(s));
  const bool cl_turned = cl_max_w > c - 2;
  const int cl_h = cl.empty() ? 0 : (cl_turned ? cl_max_w : kTextFullH);

  const std::string title = sanitize(o.title), xt = clean(o.x_label, 40), yt = clean(o.y_label, 24);
  // The y title is turned along the map's left side, or written level when the map is too short for it.
  const bool yt_level = text_width(yt) + 8 > map_h;
  const int yt_w = yt.empty() ? 0 : (yt_level ? text_width(yt) : kTextFullH) + 10;
  const int M = 20, bar_w = 22, gap_bar = 24;
  const int bar_h = static_cast<int>(std::max<long long>(map_h, 160));
  // colour-bar labels
  const float mid = 0.5f * (vmin + vmax);
  const std::string lab_max = fmt_value(vmax), lab_min = fmt_value(vmin), lab_mid = fmt_value(mid);
  const int bl_w = std::max({text_width(lab_max), text_width(lab_min), text_width(lab_mid)});

  const int left_of_map = M + yt_w + (rl.empty() ? 0 : rl_w + 8);
  int width = left_of_map + static_cast<int>(map_w) + gap_bar + bar_w + 10 + bl_w + M;
  width = std::max(width, std::min(text_width(title), 1200) + 2 * M);
  const int title_h = title.empty() ? 0 : kTextFullH + 16;
  const int map_y = M + title_h;
  const int body_h = std::max(static_cast<int>(map_h), bar_h);
  const int height = map_y + body_h + (cl.empty() ? 0 : 6 + cl_h) + (xt.empty() ? 0 : 10 + kTextFullH) + M;
  check_size(path, width, height);
  Canvas cv(width, height);

  // Centre the map-plus-bar block when the title made the picture wider.
  const int block_w = left_of_map - M + static_cast<int>(map_w) + gap_bar + bar_w + 10 + bl_w;
  const int shift = (width - 2 * M - block_w) / 2;
  const int map_x = left_of_map + std::max(0, shift);

  if (!title.empty()) draw_text_at(cv, width / 2, M, fit(title, width - 2 * M), kInk, Align::center);

  // Cells.
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k) {
      const Rgb col = colormap(to_unit(values[static_cast<size_t>(r) * cols + k]));
      cv.fill(map_x + k * c, map_y + r * c, map_x + (k + 1) * c, map_y + (r + 1) * c, col);
    }
  // Values inside big cells, dark on light colours and white on dark ones.
  if (o.annotate && static_cast<long long>(rows) * cols <= 400) {
    std::vector<std::string> txt(values.size());
    int tw = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      const float v = values[i];
      txt[i] = std::isfinite(v) && std::abs(v) < 100 ? printf_str("%.2f", v) : fmt_value(v, 3);
      tw = std::max(tw, text_width(txt[i]));
    }
    if (tw + 6 <= c && kTextFullH + 4 <= c)
      for (int r = 0; r < rows; ++r)
        for (int k = 0; k < cols; ++k) {
          const size_t i = static_cast<size_t>(r) * cols + k;
          const float u = to_unit(values[i]);
          const Rgb ink = (!std::isnan(u) && u < 0.55f) ? kWhite : kInk;
          draw_text_at(cv, map_x + k * c + c / 2, map_y + r * c + (c - kTextH) / 2, txt[i], ink, Align::center);
        }
  }
  // Tick labels.
  for (int r = 0; r < static_cast<int>(rl.size()); ++r)
    draw_text_at(cv, map_x - 8, map_y + r * c + (c - kTextH) / 2, rl[r], kInk, Align::right);
  const int cl_y = map_y + static_cast<int>(map_h) + 6;
  for (int k = 0; k < static_cast<int>(cl.size()); ++k) {
    if (cl_turned) draw_text(cv, map_x + k * c + (c - kTextH) / 2, cl_y + text_width(cl[k]), cl[k], kInk, kScale, true);
    else draw_text_at(cv, map_x + k * c + c / 2, cl_y, cl[k], kInk, Align::center);
  }
  // Axis titles: x under the column labels (centred on the map), y turned on the left.
  if (!xt.empty())
    draw_text_at(cv, map_x + static_cast<int>(map_w) / 2, cl_y + (cl.empty() ? 0 : cl_h + 10) + (cl.empty() ? 4 : 0),
                 fit(xt, static_cast<int>(map_w) + 2 * gap_bar), kInk, Align::center);
  const int yt_right = map_x - (rl.empty() ? 0 : rl_w + 8) - 10;
  if (!yt.empty() && yt_level)
    draw_text_at(cv, yt_right, map_y + static_cast<int>(map_h) / 2 - kTextH / 2, yt, kInk, Align::right);
  else if (!yt.empty())
    draw_text_up_centered(cv, yt_right - kTextFullH, map_y + static_cast<int>(map_h) / 2, yt, kInk);

  // Colour bar: vmax at the top.
  const int bx = map_x + static_cast<int>(map_w) + gap_bar, by = map_y;
  for (int y = 0; y < bar_h; ++y) {
    const float t = bar_h > 1 ? 1.0f - static_cast<float>(y) / static_cast<float>(bar_h - 1) : 1.0f;
    cv.fill(bx, by + y, bx + bar_w, by + y + 1, colormap(t));
  }
  cv.frame(bx - 1, by - 1, bx + bar_w, by + bar_h, kAxis);
  const int lx = bx + bar_w + 10;
  auto bar_label = [&](int y, const std::string& s) {
    draw_text(cv, lx, std::clamp(y - kTextH / 2, 0, height - kTextFullH), s, kInk);
  };
  bar_label(by, lab_max);
  bar_label(by + bar_h - 1, lab_min);
  if (bar_h >= 4 * kTextFullH) bar_label(by + (bar_h - 1) / 2, lab_mid);

  write_png(path, cv, -1);
}

// ------------------------------------------------------------------------------------------------------------------
// Line chart.

namespace {
struct Legend {
  std::vector<std::string> labels;  // fitted to the box
  std::vector<Rgb> colours;
  std::vector<bool> dashed;
  int w = 0, h = 0;  // the box
};
constexpr int kLegendPad = 8, kLegendSample = 28, kLegendRow = kTextFullH + 4;

// The series' labels ("series N" when empty) fitted to max_label_px, and the box size.
Legend make_legend(const std::vector<Series>& series, int max_label_px) {
  Legend lg;
  int lw = 0;
  for (size_t i = 0; i < series.size(); ++i) {
    const std::string raw = series[i].label.empty() ? "series " + std::to_string(i + 1) : sanitize(series[i].label);
    lg.labels.push_back(fit(raw, std::max(max_label_px, 40)));
    lg.colours.push_back(series_colour(i));
    lg.dashed.push_back((i / kPaletteSize) % 2 == 1);
    lw = std::max(lw, text_width(lg.labels.back()));
  }
  if (!lg.labels.empty()) {
    lg.w = kLegendPad + kLegendSample + kLegendPad + lw + kLegendPad;
    lg.h = kLegendPad + static_cast<int>(lg.labels.size()) * kLegendRow - 4 + kLegendPad;
  }
  return lg;
}

// White box with a frame, a line sample and a label per series, top-left corner at (x0, y0).
void paint_legend(Canvas& cv, const Legend& lg, int x0, int y0) {
  if (lg.labels.empty()) return;
  cv.fill(x0, y0, x0 + lg.w, y0 + lg.h, kWhite);
  cv.frame(x0, y0, x0 + lg.w - 1, y0 + lg.h - 1, {180, 180, 180});
  const int sx = x0 + kLegendPad;
  for (size_t i = 0; i < lg.labels.size(); ++i) {
    const int ry = y0 + kLegendPad + static_cast<int>(i) * kLegendRow;
    Coverage cov(sx - 2, ry - 4, sx + kLegendSample + 2, ry + kTextH + 4);
    const double ly = ry + kTextH / 2.0;
    if (lg.dashed[i]) {
      cov.segment(sx, ly, sx + 11, ly, 1.25);
      cov.segment(sx + 17, ly, sx + kLegendSample, ly, 1.25);
    } else {
      cov.segment(sx, ly, sx + kLegendSample, ly, 1.25);
    }
    cov.paint(cv, lg.colours[i]);
    draw_text(cv, sx + kLegendSample + kLegendPad, ry, lg.labels[i], kInk);
  }
}

// The plot corner whose box would hide the fewest line pixels (ties: top right, bottom right, top left, bottom
// left); returns that count.
long long best_corner(const Frame& f, const Legend& lg, const std::vector<unsigned char>& occupied, int canvas_w,
                      int canvas_h, int& x, int& y) {
  const int inset = 10;
  const int xs[4] = {f.x1 - inset - lg.w, f.x1 - inset - lg.w, f.x0 + inset, f.x0 + inset};
  const int ys[4] = {f.y0 + inset, f.y1 - inset - lg.h, f.y0 + inset, f.y1 - inset - lg.h};
  long long best = -1;
  for (int i = 0; i < 4; ++i) {
    long long count = 0;
    for (int py = std::max(0, ys[i]); py < std::min(canvas_h, ys[i] + lg.h); ++py)
      for (int px = std::max(0, xs[i]); px < std::min(canvas_w, xs[i] + lg.w); ++px)
        count += occupied[static_cast<size_t>(py) * canvas_w + px];
    if (best < 0 || count < best) best = count, x = xs[i], y = ys[i];
  }
  return best;
}

// x tick labels under the plot, skipping any that would collide with the previous one.
void draw_x_ticks(Canvas& cv, const Frame& f, const Axis& xax) {
  int last_right = -1000000;
  for (size_t i = 0; i < xax.ticks.size(); ++i) {
    const double t = xax.map(xax.ticks[i]);
    const int px = static_cast<int>(std::floor(f.px(t)));
    if (px < f.x0 || px >= f.x1) continue;
    cv.vline(px, f.y0, f.y1 - 1, kGrid);
    cv.vline(px, f.y1, f.y1 + 4, kAxis);
    const int w = text_width(xax.labels[i]);
    int lx = std::clamp(px - w / 2, 0, cv.w - w);
    if (lx < last_right + 12) continue;
    draw_text(cv, lx, f.y1 + 10, xax.labels[i], kInk);
    last_right = lx + w;
  }
}
}  // namespace

namespace {
// Draws the chart with the legend inside the plot (in its emptiest corner) or, with legend_outside, to the right of
// the plot. Sets `hidden` to the number of line pixels the legend covers.
Canvas render_line_chart(const std::vector<Series>& series, const ChartOptions& o, bool legend_outside,
                         long long& hidden) {
  const int W = std::clamp(o.width, 240, kMaxChartSide), H = std::clamp(o.height, 180, kMaxChartSide);
  auto xat = [](const Series& s, size_t i) { return s.x.empty() ? static_cast<double>(i) : s.x[i]; };

  // Data ranges over the usable points.
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  size_t usable_points = 0;
  for (const auto& s : series)
    for (size_t i = 0; i < s.y.size(); ++i) {
      const double x = xat(s, i), y = s.y[i];
      if (!usable(x, y, o.log_y)) continue;
      xlo = std::min(xlo, x), xhi = std::max(xhi, x), ylo = std::min(ylo, y), yhi = std::max(yhi, y);
      ++usable_points;
    }
  if (usable_points == 0) xlo = 0, xhi = 1, ylo = o.log_y ? 1 : 0, yhi = o.log_y ? 10 : 1;

  Canvas cv(W, H);
  const int yticks_target = std::clamp(H / 100, 3, 10);
  const Axis yax = o.log_y ? log_axis(ylo, yhi) : linear_axis(ylo, yhi, yticks_target, true, 0.04, true);
  Legend lg = make_legend(series, legend_outside ? W * 3 / 10 : (W - 200) / 2 - 60);
  const int right = legend_outside && lg.w > 0 ? lg.w + 28 : 34;
  const Frame f = layout_and_draw_frame(cv, o, yax, 10 + kTextFullH, right, kInset);
  if (!legend_outside) lg = make_legend(series, (f.x1 - f.x0) / 2 - kLegendSample - 3 * kLegendPad);
  const Axis xax = linear_axis(xlo, xhi, std::clamp((f.x1 - f.x0) / 110, 2, 10), false, 0.0, false);
  draw_x_ticks(cv, f, xax);

  auto to_px = [&](double x, double y, double& px, double& py) {
    px = f.px(xax.map(x));
    py = f.py(yax.map(y));
    px = std::clamp(px, -1e6, 1e6), py = std::clamp(py, -1e6, 1e6);
  };

  // Lines: one coverage buffer per series, painted in order; occupied marks drawn pixels for the legend placement.
  std::vector<unsigned char> occupied(static_cast<size_t>(W) * H, 0);
  for (size_t si = 0; si < series.size(); ++si) {
    const Series& s = series[si];
    const Rgb colour = lg.colours[si];
    const bool dashed = lg.dashed[si];
    Coverage cov(f.x0, f.y0, f.x1, f.y1);
    const double hw = 1.25;
    size_t n_usable = 0;
    for (size_t i = 0; i < s.y.size(); ++i) n_usable += usable(xat(s, i), s.y[i], o.log_y);
    const bool markers = n_usable <= 40;
    double dash_pos = 0;  // arc length along the current dashed run
    bool have_prev = false;
    double ppx = 0, ppy = 0;
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!usable(xat(s, i), s.y[i], o.log_y)) {
        have_prev = false;  // a skipped point breaks the line
        continue;
      }
      double px, py;
      to_px(xat(s, i), s.y[i], px, py);
      const bool next_usable = i + 1 < s.y.size() && usable(xat(s, i + 1), s.y[i + 1], o.log_y);
      if (markers || (!have_prev && !next_usable)) cov.dot(px, py, markers ? 3.2 : hw + 1.0);
      if (have_prev) {
        if (!dashed) {
          cov.segment(ppx, ppy, px, py, hw);
        } else {  // 9 px on, 6 px off
          const double len = std::hypot(px - ppx, py - ppy);
          double t = 0;
          while (t < len) {
            const double phase = std::fmod(dash_pos, 15.0);
            const double run = phase < 9 ? 9 - phase : 15 - phase;
            const double t1 = std::min(len, t + run);
            if (phase < 9 && len > 0)
              cov.segment(ppx + (px - ppx) * t / len, ppy + (py - ppy) * t / len, ppx + (px - ppx) * t1 / len,
                          ppy + (py - ppy) * t1 / len, hw);
            dash_pos += t1 - t;
            t = t1;
          }
        }
      }
      have_prev = true, ppx = px, ppy = py;
    }
    cov.paint(cv, colour);
    for (int y = f.y0; y < f.y1; ++y)
      for (int x = f.x0; x < f.x1; ++x) occupied[static_cast<size_t>(y) * W + x] |= cov.at(x, y) > 25;
  }
  cv.frame(f.x0 - 1, f.y0 - 1, f.x1, f.y1, kAxis);
  if (usable_points == 0)
    draw_text_at(cv, (f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2 - kTextH / 2, "no data", {150, 150, 150}, Align::center);
  hidden = 0;
  if (legend_outside) {
    paint_legend(cv, lg, f.x1 + 16, f.y0);
  } else if (!lg.labels.empty()) {
    int x = 0, y = 0;
    hidden = best_corner(f, lg, occupied, W, H, x, y);
    paint_legend(cv, lg, x, y);
  }
  return cv;
}
}  // namespace

void write_line_chart(const std::string& path, const std::vector<Series>& series, const ChartOptions& o) {
  for (const auto& s : series)
    if (!s.x.empty() && s.x.size() != s.y.size())
      fail("plot: line chart '", path, "': series '", s.label, "' has ", s.x.size(), " x values but ", s.y.size(),
           " y values");
  // The legend goes inside the plot unless it would hide more than a few line pixels there.
  long long hidden = 0;
  Canvas cv = render_line_chart(series, o, false, hidden);
  if (hidden > 40) {
    long long unused = 0;
    cv = render_line_chart(series, o, true, unused);
  }
  write_png(path, cv, 0);
}

}  // namespace qkvlab::plot
