// Array core (tensor/array.h): views, copies, element access, errors, printing, storage lifetime.
//
// The random tests build a chain of views on an arange base and check every result against a reference that
// knows nothing of strides: a function from a multi-index of the view to the flat index in the base, composed
// op by op (permute maps indices, slice adds start + i*step, expand pins broadcast dims to 0, ...). Because the
// base holds 0, 1, 2, ..., the value at a multi-index *is* the base index the reference must compute.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/array.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

using namespace qkvlab;
using Catch::Contains;
using Index = std::vector<int64_t>;

namespace {

// ---------------------------------------------------------------- reference machinery

struct Ref {
  Shape shape;
  std::function<int64_t(const Index&)> map;  // view multi-index -> flat index of the base
};

Index unravel(int64_t flat, const Shape& shape) {
  Index idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

int64_t ravel(const Index& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

// Every multi-index of a shape, row-major.
std::vector<Index> all_indices(const Shape& shape) {
  std::vector<Index> out;
  for (int64_t f = 0, n = shape_numel(shape); f < n; ++f) out.push_back(unravel(f, shape));
  return out;
}

// Base flat indices of a reference view, row-major.
std::vector<double> ref_values(const Ref& r) {
  std::vector<double> out;
  for (const Index& i : all_indices(r.shape)) out.push_back(static_cast<double>(r.map(i)));
  return out;
}

Ref base_ref(const Shape& shape) {
  return {shape, [shape](const Index& i) { return ravel(i, shape); }};
}

// One step of a chain: what it does to an Array, and to the reference.
struct Op {
  std::string desc;
  std::function<Array(const Array&)> apply;
};

int64_t rnd(Generator& g, int64_t lo, int64_t hi_inclusive) { return g.randint(lo, hi_inclusive + 1); }

// Appends a random view op (with random, valid arguments) to `ops` and updates the reference `r` to match.
void random_op(Generator& g, Ref& r, std::vector<Op>& ops) {
  const int64_t nd = static_cast<int64_t>(r.shape.size());
  auto old = r;
  for (int attempt = 0; attempt < 20; ++attempt) {
    switch (rnd(g, 0, 8)) {
      case 0: {  // permute
        if (nd < 2) break;
        std::vector<int64_t> p(static_cast<size_t>(nd));
        std::iota(p.begin(), p.end(), 0);
        for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[static_cast<size_t>(g.randint(0, i))]);
        std::vector<int64_t> arg = p;
        if (rnd(g, 0, 1)) arg[0] -= nd;  // negative dims work too
        Shape sh(p.size());
        for (size_t i = 0; i < p.size(); ++i) sh[i] = old.shape[static_cast<size_t>(p[i])];
        r = {sh, [old, p](const Index& i) {
               Index o(i.size());
               for (size_t k = 0; k < p.size(); ++k) o[static_cast<size_t>(p[k])] = i[k];
               return old.map(o);
             }};
        ops.push_back({"permute(" + shape_str(arg) + ")", [arg](const Array& a) { return a.permute(arg); }});
        return;
      }
      case 1: {  // transpose
        if (nd < 2) break;
        int64_t d0 = rnd(g, 0, nd - 1), d1 = rnd(g, 0, nd - 1);
        Shape sh = old.shape;
        std::swap(sh[d0], sh[d1]);
        r = {sh, [old, d0, d1](Index i) {
               std::swap(i[d0], i[d1]);
               return old.map(i);
             }};
        ops.push_back({"transpose(" + std::to_string(d0) + "," + std::to_string(d1 - nd) + ")",
                       [d0, d1, nd](const Array& a) { return a.transpose(d0, d1 - nd); }});
        return;
      }
      case 2:
      case 3: {  // slice with Python semantics: maybe negative, maybe out of range (clamped), maybe stepped
        if (nd < 1) break;
        int64_t d = rnd(g, 0, nd - 1), n = old.shape[d];
        int64_t start = rnd(g, -n - 2, n + 2), end = rnd(g, -n - 2, n + 2), step = rnd(g, 1, 3);
        // Reference, written as Python defines it.
        int64_t s = start < 0 ? std::max<int64_t>(start + n, 0) : std::min(start, n);
        int64_t e = end < 0 ? std::max<int64_t>(end + n, 0) : std::min(end, n);
        int64_t len = 0;
        for (int64_t k = s; k < e; k += step) ++len;
        Shape sh = old.shape;
        sh[d] = len;
        r = {sh, [old, d, s, step](Index i) {
               i[d] = s + i[d] * step;
               return old.map(i);
             }};
        ops.push_back({"slice(" + std::to_string(d) + "," + std::to_string(start) + "," + std::to_string(end) +
                           "," + std::to_string(step) + ")",
                       [d, start, end, step](const Array& a) { return a.slice(d, start, end, step); }});
        return;
      }
      case 4: {  // narrow
        if (nd < 1) break;
        int64_t d = rnd(g, 0, nd - 1), n = old.shape[d];
        int64_t start = rnd(g, 0, n), length = rnd(g, 0, n - start);
        Shape sh = old.shape;
        sh[d] = length;
        r = {sh, [old, d, start](Index i) {
               i[d] += start;
               return old.map(i);
             }};
        int64_t arg = (rnd(g, 0, 1) && start > 0) ? start - n : start;  // negative start counts from the end
        ops.push_back({"narrow(" + std::to_string(d) + "," + std::to_string(arg) + "," + std::to_string(length) + ")",
                       [d, arg, length](const Array& a) { return a.narrow(d, arg, length); }});
        return;
      }
      case 5: {  // select
        if (nd < 1) break;
        int64_t d = rnd(g, 0, nd - 1), n = old.shape[d];
        if (n == 0) break;
        int64_t idx = rnd(g, 0, n - 1);
        int64_t arg = rnd(g, 0, 1) ? idx - n : idx;
        Shape sh = old.shape;
        sh.erase(sh.begin() + d);
        r = {sh, [old, d, idx](Index i) {
               i.insert(i.begin() + d, idx);
               return old.map(i);
             }};
        ops.push_back({"select(" + std::to_string(d) + "," + std::to_string(arg) + ")",
                       [d, arg](const Array& a) { return a.select(d, arg); }});
        return;
      }
      case 6: {  // expand size-1 dims, maybe with new leading dims
        if (nd > 4) break;
        int64_t lead = rnd(g, 0, 1);
        Shape target;
        for (int64_t k = 0; k < lead; ++k) target.push_back(rnd(g, 1, 3));
        for (int64_t k = 0; k < nd; ++k)
          target.push_back(old.shape[k] == 1 ? rnd(g, 0, 3) : (rnd(g, 0, 3) == 0 ? -1 : old.shape[k]));
        Shape sh = target;
        for (int64_t k = 0; k < nd; ++k)
          if (sh[lead + k] == -1) sh[lead + k] = old.shape[k];
        r = {sh, [old, lead](const Index& i) {
               Index o(i.begin() + lead, i.end());
               for (size_t k = 0; k < o.size(); ++k)
                 if (old.shape[k] == 1) o[k] = 0;
               return old.map(o);
             }};
        ops.push_back({"expand(" + shape_str(target) + ")", [target](const Array& a) { return a.expand(target); }});
        return;
      }
      case 7: {  // unsqueeze / squeeze
        if (rnd(g, 0, 1) && nd < 5) {
          int64_t d = rnd(g, 0, nd);
          Shape sh = old.shape;
          sh.insert(sh.begin() + d, 1);
          r = {sh, [old, d](Index i) {
                 i.erase(i.begin() + d);
                 return old.map(i);
               }};
          int64_t arg = rnd(g, 0, 1) ? d - nd - 1 : d;
          ops.push_back({"unsqueeze(" + std::to_string(arg) + ")", [arg](const Array& a) { return a.unsqueeze(arg); }});
          return;
        }
        std::vector<int64_t> ones;
        for (int64_t k = 0; k < nd; ++k)
          if (old.shape[k] == 1) ones.push_back(k);
        if (ones.empty()) break;
        if (rnd(g, 0, 1)) {  // squeeze one dim
          int64_t d = ones[static_cast<size_t>(g.randint(0, static_cast<int64_t>(ones.size())))];
          Shape sh = old.shape;
          sh.erase(sh.begin() + d);
          r = {sh, [old, d](Index i) {
                 i.insert(i.begin() + d, 0);
                 return old.map(i);
               }};
          ops.push_back({"squeeze(" + std::to_string(d) + ")", [d](const Array& a) { return a.squeeze(d); }});
        } else {  // squeeze all
          Shape sh;
          for (int64_t s : old.shape)
            if (s != 1) sh.push_back(s);
          r = {sh, [old](const Index& i) {
                 Index o;
                 size_t k = 0;
                 for (int64_t s : old.shape) o.push_back(s == 1 ? 0 : i[k++]);
                 return old.map(o);
               }};
          ops.push_back({"squeeze()", [](const Array& a) { return a.squeeze(); }});
        }
        return;
      }
      case 8: {  // reshape (a view when possible, else a copy; the values are the same either way)
        const int64_t n = shape_numel(old.shape);
        Shape sh;
        if (n == 0) {
          sh = {0, rnd(g, 1, 3)};
        } else {
          int64_t rem = n;
          while (rem > 1 && sh.size() < 3) {
            std::vector<int64_t> divs;
            for (int64_t k = 2; k <= rem; ++k)
              if (rem % k == 0) divs.push_back(k);
            int64_t f = divs[static_cast<size_t>(g.randint(0, static_cast<int64_t>(divs.size())))];
            sh.push_back(f);
            rem /= f;
          }
          if (rem > 1) sh.push_back(rem);
          if (rnd(g, 0, 2) == 0) sh.insert(sh.begin() + rnd(g, 0, static_cast<int64_t>(sh.size())), 1);
        }
        Shape arg = sh;
        if (!arg.empty() && rnd(g, 0, 1) && n > 0) arg[static_cast<size_t>(g.randint(0, int64_t(arg.size())))] = -1;
        r = {sh, [old, sh](const Index& i) { return old.map(unravel(ravel(i, sh), old.shape)); }};
        ops.push_back({"reshape(" + shape_str(arg) + ")", [arg](const Array& a) { return a.reshape(arg); }});
        return;
      }
    }
  }
  FAIL("random_op found no op for " << shape_str(old.shape));  // reshape always applies: cannot happen
}

Shape random_shape(Generator& g) {
  Shape s(static_cast<size_t>(rnd(g, 1, 4)));
  for (auto& d : s) d = rnd(g, 0, 12) == 0 ? 0 : rnd(g, 1, 5);
  return s;
}

Array apply_ops(Array a, const std::vector<Op>& ops) {
  for (const Op& op : ops) a = op.apply(a);
  return a;
}

std::string describe(const Shape& base, const std::vector<Op>& ops) {
  std::string s = "arange" + shape_str(base);
  for (const Op& op : ops) s += "." + op.desc;
  return s;
}

// Every element read three ways (at, to_vector, the reference) agrees.
void check_matches(const Array& v, const Ref& r) {
  REQUIRE(v.shape() == r.shape);
  REQUIRE(v.strides().size() == r.shape.size());
  REQUIRE(v.numel() == shape_numel(r.shape));
  auto want = ref_values(r);
  REQUIRE(v.to_vector() == want);
  size_t k = 0;
  for (const Index& i : all_indices(r.shape)) REQUIRE(v.at(i) == want[k++]);
}

// The oracle for view(): the strides a view would need are read off the element offsets; the view exists iff
// they reproduce every offset. Returns false if no strides work.
bool view_oracle(const Array& a, const Shape& new_shape, Strides* strides) {
  std::vector<int64_t> offs;  // storage offset of each element, row-major
  for (const Index& i : all_indices(a.shape())) {
    int64_t o = a.offset();
    for (size_t d = 0; d < i.size(); ++d) o += i[d] * a.strides()[d];
    offs.push_back(o);
  }
  if (offs.empty()) return true;
  Strides st(new_shape.size(), 0);
  for (size_t d = 0; d < new_shape.size(); ++d) {
    if (new_shape[d] < 2) continue;
    Index e(new_shape.size(), 0);
    e[d] = 1;
    st[d] = offs[static_cast<size_t>(ravel(e, new_shape))] - offs[0];
  }
  for (const Index& i : all_indices(new_shape)) {
    int64_t o = offs[0];
    for (size_t d = 0; d < i.size(); ++d) o += i[d] * st[d];
    if (o != offs[static_cast<size_t>(ravel(i, new_shape))]) return false;
  }
  if (strides) *strides = st;
  return true;
}

bool injective(const Ref& r) {
  std::set<int64_t> seen;
  for (const Index& i : all_indices(r.shape))
    if (!seen.insert(r.map(i)).second) return false;
  return true;
}

Array arange_f64(const Shape& shape) { return Array::arange(shape_numel(shape), DType::F64).reshape(shape); }

}  // namespace

// ---------------------------------------------------------------- random chains of views

TEST_CASE("random view chains match the reference and share storage", "[array][view]") {
  Generator g(2024);
  int copied = 0, shared = 0;
  for (int trial = 0; trial < 300; ++trial) {
    Shape base_shape = random_shape(g);
    Array base = arange_f64(base_shape);
    Ref r = base_ref(base_shape);
    std::vector<Op> ops;
    int nops = static_cast<int>(rnd(g, 1, 5));
    for (int k = 0; k < nops; ++k) random_op(g, r, ops);
    INFO(describe(base_shape, ops));
    Array v = apply_ops(base, ops);
    check_matches(v, r);
    // Views copy nothing; only a reshape that cannot be a view may copy.
    bool has_reshape = false;
    for (const Op& op : ops) has_reshape = has_reshape || op.desc.rfind("reshape", 0) == 0;
    if (!has_reshape) REQUIRE(v.shares_storage(base));
    (v.shares_storage(base) ? shared : copied)++;

    // contiguous(): the same values, packed; no copy when already contiguous.
    Array c = v.contiguous();
    REQUIRE(c.is_contiguous());
    if (c.numel() > 0)  // (size-1 dims of an already contiguous view keep whatever stride they had)
      for (size_t d = 0; d < c.shape().size(); ++d)
        if (c.shape()[d] > 1) REQUIRE(c.strides()[d] == contiguous_strides(v.shape())[d]);
    check_matches(c, r);
    REQUIRE(c.shares_storage(v) == v.is_contiguous());
    // is_contiguous agrees with "offsets are 0,1,2,... from the first element" (size-0 views are contiguous).
    {
      bool packed = true;
      int64_t k = 0;
      for (const Index& i : all_indices(v.shape())) {
        int64_t o = 0;
        for (size_t d = 0; d < i.size(); ++d) o += i[d] * v.strides()[d];
        packed = packed && o == k++;
      }
      REQUIRE(v.is_contiguous() == packed);
    }
    // clone(): always a fresh packed copy.
    Array cl = v.clone();
    REQUIRE_FALSE(cl.shares_storage(v));
    REQUIRE(cl.is_contiguous());
    check_matches(cl, r);
    // to(dtype): converted copies.
    Array f = v.to(DType::F32);
    REQUIRE(f.dtype() == DType::F32);
    REQUIRE_FALSE(f.shares_storage(v));
    REQUIRE(f.to_vector() == ref_values(r));
    Array i64 = v.to(DType::I64);
    std::vector<int64_t> wi;
    for (double x : ref_values(r)) wi.push_back(static_cast<int64_t>(x));
    REQUIRE(i64.to_ints() == wi);
    REQUIRE(i64.to(DType::F64).to_vector() == ref_values(r));
    REQUIRE(v.to(DType::F64).shares_storage(v));  // same dtype: no copy
    // A view chained on the packed copy gives the same values as on the original.
    if (v.ndim() >= 1 && v.size(0) > 0) REQUIRE(c.select(0, -1).to_vector() == v.select(0, -1).to_vector());
  }
  REQUIRE(shared > 100);  // the generator really exercises views
  REQUIRE(copied > 0);    // and reshapes that must copy
}

TEST_CASE("view succeeds exactly when strides exist, reshape falls back to a copy", "[array][view]") {
  Generator g(77);
  int views = 0, refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    Shape base_shape = random_shape(g);
    Array base = arange_f64(base_shape);
    Ref r = base_ref(base_shape);
    std::vector<Op> ops;
    for (int k = 0, n = static_cast<int>(rnd(g, 0, 3)); k < n; ++k) random_op(g, r, ops);
    Array v = apply_ops(base, ops);
    // Target shapes with the same element count.
    const int64_t n = v.numel();
    std::vector<Shape> targets = {{n}, {n, 1}, {1, n}, {}};
    if (n != 1) targets.pop_back();  // only one element fits a 0-d shape
    for (int64_t a = 1; a <= n; ++a)
      if (n % a == 0) targets.push_back({a, n / a});
    if (v.ndim() >= 2) {
      Shape merged = v.shape();
      merged[0] *= merged[1];
      merged.erase(merged.begin() + 1);
      targets.push_back(merged);
    }
    for (const Shape& t : targets) {
      INFO(describe(base_shape, ops) << ".view(" << shape_str(t) << ")");
      Strides want_st;
      bool ok = view_oracle(v, t, &want_st);
      Ref tr{t, [r, t](const Index& i) { return r.map(unravel(ravel(i, t), r.shape)); }};
      if (ok) {
        Array w = v.view(t);
        ++views;
        REQUIRE(w.shares_storage(v));
        check_matches(w, tr);
        if (n > 0)
          for (size_t d = 0; d < t.size(); ++d)
            if (t[d] > 1) REQUIRE(w.strides()[d] == want_st[d]);
        REQUIRE(v.reshape(t).shares_storage(v));
      } else {
        ++refused;
        REQUIRE_THROWS_WITH(v.view(t), Contains("view: cannot view") && Contains("use reshape"));
        Array w = v.reshape(t);
        REQUIRE_FALSE(w.shares_storage(v));
        REQUIRE(w.is_contiguous());
        check_matches(w, tr);
      }
    }
  }
  REQUIRE(views > 100);
  REQUIRE(refused > 20);
}

TEST_CASE("copy_ broadcasts src into strided destination views", "[array][copy]") {
  Generator g(31337);
  int done = 0;
  for (int trial = 0; trial < 300; ++trial) {
    Shape base_shape = random_shape(g);
    Ref r = base_ref(base_shape);
    std::vector<Op> ops;
    for (int k = 0, n = static_cast<int>(rnd(g, 1, 4)); k < n; ++k) random_op(g, r, ops);
    if (!injective(r)) continue;  // an expanded destination writes one element many times
    Array dst_base = arange_f64(base_shape);
    Array dst = apply_ops(dst_base, ops);
    if (!dst.shares_storage(dst_base)) continue;  // a copying reshape: not a view of dst_base
    INFO(describe(base_shape, ops));
    // src: the destination shape with some leading dims dropped and some dims set to 1, random dtype.
    Shape ss = dst.shape();
    int64_t drop = rnd(g, 0, static_cast<int64_t>(ss.size()));
    ss.erase(ss.begin(), ss.begin() + drop);
    for (auto& s : ss)
      if (rnd(g, 0, 2) == 0) s = 1;
    DType sdt = std::vector<DType>{DType::F32, DType::F64, DType::I64}[static_cast<size_t>(g.randint(0, 3))];
    Array src = Array::arange(shape_numel(ss), sdt).reshape(ss);
    for (int64_t i = 0; i < src.numel(); ++i) {
      Index idx = unravel(i, ss);
      src.set(idx, 1000 + 7 * i);  // distinct from the destination's 0..n-1
    }
    if (rnd(g, 0, 1) && src.ndim() >= 2) src = src.mT().contiguous().mT();  // a strided src as well
    // Reference: the new contents of the base.
    std::vector<double> want = arange_f64(base_shape).to_vector();
    for (const Index& i : all_indices(dst.shape())) {
      Index si(i.begin() + drop, i.end());
      for (size_t d = 0; d < si.size(); ++d)
        if (ss[d] == 1) si[d] = 0;
      want[static_cast<size_t>(r.map(i))] = 1000 + 7 * ravel(si, ss);
    }
    dst.copy_(src);
    REQUIRE(dst_base.to_vector() == want);
    // fill_ writes exactly the view's elements.
    Array fb = arange_f64(base_shape);
    apply_ops(fb, ops).fill_(-5.5);
    std::vector<double> wf = arange_f64(base_shape).to_vector();
    for (const Index& i : all_indices(dst.shape())) wf[static_cast<size_t>(r.map(i))] = -5.5;
    REQUIRE(fb.to_vector() == wf);
    ++done;
  }
  REQUIRE(done > 100);
}

// ---------------------------------------------------------------- each view, by hand

TEST_CASE("view and reshape", "[array][view]") {
  Array a = Array::arange(24);
  Array v = a.view({2, 3, 4});
  REQUIRE(v.shares_storage(a));
  REQUIRE(v.strides() == Strides{12, 4, 1});
  REQUIRE(v.at({1, 2, 3}) == 23);
  REQUIRE(a.view({4, -1}).shape() == Shape{4, 6});
  REQUIRE(a.view({-1}).shape() == Shape{24});
  REQUIRE(a.view({2, -1, 3}).shape() == Shape{2, 4, 3});
  REQUIRE_THROWS_WITH(a.view({-1, -1}), Contains("only one dim may be -1"));
  REQUIRE_THROWS_WITH(a.view({5, -1}), Contains("cannot infer -1 in (5,-1)"));
  REQUIRE_THROWS_WITH(a.view({5, 5}), Contains("shape (5,5) is invalid for (24,) (24 elements)"));
  REQUIRE_THROWS_WITH(a.view({-2, 12}), Contains("invalid size -2"));
  // A transposed array cannot be flattened without a copy; reshape copies.
  Array t = v.transpose(0, 2);  // (4,3,2)
  REQUIRE_THROWS_WITH(t.view({24}), Contains("view: cannot view (4,3,2) with strides (1,4,12) as (24,)"));
  Array f = t.reshape({24});
  REQUIRE_FALSE(f.shares_storage(a));
  REQUIRE(f.at({1}) == 12);  // t[0][0][1] = v[1][0][0]
  REQUIRE(t.flatten().to_vector() == f.to_vector());
  // But splitting or merging dims that stay packed is a view, even on a transposed array.
  Array t2 = v.permute({1, 0, 2});  // (3,2,4) strides (4,12,1)
  Array s = t2.view({3, 2, 2, 2});
  REQUIRE(s.shares_storage(a));
  REQUIRE(s.strides() == Strides{4, 12, 2, 1});
  // Size-0 dims: any shape with 0 elements; -1 cannot be inferred next to a 0.
  Array z = Array::zeros({0, 3});
  REQUIRE(z.view({3, 0}).shape() == Shape{3, 0});
  REQUIRE(z.view({0}).shape() == Shape{0});
  REQUIRE(z.reshape({2, 0, 5}).numel() == 0);
  REQUIRE_THROWS_WITH(z.view({-1, 0}), Contains("cannot infer"));
  REQUIRE_THROWS_WITH(z.view({0, -1, 3}), Contains("cannot infer -1 in (0,-1,3)"));  // as in PyTorch
}

TEST_CASE("0-d arrays view and reshape to all-1 shapes", "[array][view]") {
  // Bug fixed: view/reshape/flatten of a 0-d array threw "cannot view () ... as (1,)".
  Array s = Array::scalar(4.5);
  Array v = s.view({1});
  REQUIRE(v.shares_storage(s));
  REQUIRE(v.shape() == Shape{1});
  REQUIRE(v.at({0}) == 4.5);
  REQUIRE(s.view({1, 1, 1}).at({0, 0, 0}) == 4.5);
  REQUIRE(s.reshape({-1}).shape() == Shape{1});
  REQUIRE(s.flatten().to_vector() == std::vector<double>{4.5});
  REQUIRE(s.view({}).item() == 4.5);
  REQUIRE(v.view({}).ndim() == 0);
  REQUIRE_THROWS_WITH(s.view({2}), Contains("invalid"));
  REQUIRE(s.unsqueeze(0).shape() == Shape{1});
  REQUIRE(s.unsqueeze(-1).shape() == Shape{1});
  REQUIRE(s.expand({3, 2}).to_vector() == std::vector<double>(6, 4.5));
  REQUIRE(s.squeeze().ndim() == 0);
}

TEST_CASE("permute and transpose", "[array][view]") {
  Array a = arange_f64({2, 3, 4});
  Array p = a.permute({2, 0, 1});
  REQUIRE(p.shape() == Shape{4, 2, 3});
  REQUIRE(p.strides() == Strides{1, 12, 4});
  REQUIRE(p.shares_storage(a));
  REQUIRE(p.at({3, 1, 2}) == a.at({1, 2, 3}));
  REQUIRE(a.permute({-1, -3, -2}).strides() == p.strides());
  REQUIRE(a.transpose(0, -1).shape() == Shape{4, 3, 2});
  REQUIRE(a.mT().shape() == Shape{2, 4, 3});
  REQUIRE(a.mT().at({1, 3, 2}) == a.at({1, 2, 3}));
  REQUIRE(a.transpose(1, 1).strides() == a.strides());
  REQUIRE_THROWS_WITH(a.permute({0, 1}), Contains("permute: expected 3 dims for shape (2,3,4), got (0,1)"));
  REQUIRE_THROWS_WITH(a.permute({0, 1, 1}), Contains("dim 1 appears twice"));
  REQUIRE_THROWS_WITH(a.permute({0, 1, 3}), Contains("dim 3 is out of range"));
  REQUIRE_THROWS_WITH(a.transpose(0, 5), Contains("transpose: dim 5 is out of range for a tensor with 3 dims"));
}

TEST_CASE("slice: Python start:end:step, negative indices, clamping", "[array][view]") {
  Array a = Array::arange(10, DType::F64);
  auto sl = [&](int64_t s, int64_t e, int64_t st) { return a.slice(0, s, e, st).to_vector(); };
  using V = std::vector<double>;
  REQUIRE(sl(2, 5, 1) == V{2, 3, 4});
  REQUIRE(sl(0, 10, 3) == V{0, 3, 6, 9});
  REQUIRE(sl(1, 10, 3) == V{1, 4, 7});
  REQUIRE(sl(-3, 10, 1) == V{7, 8, 9});
  REQUIRE(sl(-3, -1, 1) == V{7, 8});
  REQUIRE(sl(-100, 2, 1) == V{0, 1});
  REQUIRE(sl(8, 100, 1) == V{8, 9});
  REQUIRE(sl(5, 2, 1).empty());
  REQUIRE(sl(10, 20, 1).empty());
  REQUIRE(sl(-1, -5, 1).empty());
  REQUIRE(sl(0, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()) == V{0});
  REQUIRE(sl(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 4) == V{0, 4, 8});
  Array s = a.slice(0, 1, 9, 2);
  REQUIRE(s.shares_storage(a));
  REQUIRE(s.offset() == 1);
  REQUIRE(s.strides() == Strides{2});
  REQUIRE_THROWS_WITH(a.slice(0, 0, 5, 0), Contains("step must be positive, got 0"));
  REQUIRE_THROWS_WITH(a.slice(0, 0, 5, -1), Contains("got -1"));
  REQUIRE_THROWS_WITH(a.slice(1, 0, 5), Contains("slice: dim 1 is out of range"));
  // Slicing a slice composes offsets and steps.
  Array m = arange_f64({4, 6}).slice(1, 1, 6, 2).slice(0, -3, 4, 2);  // rows 1,3; cols 1,3,5
  REQUIRE(m.to_vector() == V{7, 9, 11, 19, 21, 23});
}

TEST_CASE("narrow and select", "[array][view]") {
  Array a = arange_f64({3, 5});
  Array n = a.narrow(1, 1, 3);
  REQUIRE(n.shape() == Shape{3, 3});
  REQUIRE(n.shares_storage(a));
  REQUIRE(n.to_vector() == std::vector<double>{1, 2, 3, 6, 7, 8, 11, 12, 13});
  REQUIRE(a.narrow(1, -2, 2).to_vector() == std::vector<double>{3, 4, 8, 9, 13, 14});
  REQUIRE(a.narrow(0, 3, 0).numel() == 0);
  REQUIRE_THROWS_WITH(a.narrow(1, 4, 2), Contains("length 2 from start 4 is out of range for dim 1 of size 5"));
  REQUIRE_THROWS_WITH(a.narrow(1, 6, 0), Contains("start 6"));
  REQUIRE_THROWS_WITH(a.narrow(1, -7, 1), Contains("start -7"));
  REQUIRE_THROWS_WITH(a.narrow(0, 0, -1), Contains("length -1"));

  Array s = a.select(0, 1);
  REQUIRE(s.shape() == Shape{5});
  REQUIRE(s.shares_storage(a));
  REQUIRE(s.to_vector() == std::vector<double>{5, 6, 7, 8, 9});
  REQUIRE(a.select(1, -1).to_vector() == std::vector<double>{4, 9, 14});
  REQUIRE(a.select(0, 2).select(0, 3).ndim() == 0);
  REQUIRE(a.select(0, 2).select(0, 3).item() == 13);
  REQUIRE_THROWS_WITH(a.select(0, 3), Contains("select: index 3 is out of range for dim 0 of size 3"));
  REQUIRE_THROWS_WITH(a.select(1, -6), Contains("index -6"));
  REQUIRE_THROWS_WITH(Array::scalar(1).select(0, 0), Contains("select: dim 0 is out of range"));
}

TEST_CASE("expand: stride 0, new leading dims, only size-1 dims grow", "[array][view]") {
  Array a = Array::from_vector(std::vector<double>{1, 2, 3}, {3, 1});
  Array e = a.expand({2, 3, 4});
  REQUIRE(e.shape() == Shape{2, 3, 4});
  REQUIRE(e.strides() == Strides{0, 1, 0});
  REQUIRE(e.shares_storage(a));
  for (const Index& i : all_indices(e.shape())) REQUIRE(e.at(i) == 1 + i[1]);
  REQUIRE(a.expand({-1, 5}).shape() == Shape{3, 5});
  REQUIRE(a.expand({3, 0}).numel() == 0);
  REQUIRE(a.expand({3, 1}).strides() == a.strides());
  REQUIRE_THROWS_WITH(a.expand({4, 4}), Contains("expand: cannot expand (3,1) to (4,4) (dim 0 has size 3, not 1)"));
  REQUIRE_THROWS_WITH(a.expand({4}), Contains("cannot expand (3,1) to fewer dims (4,)"));
  REQUIRE_THROWS_WITH(a.expand({-1, 3, 4}), Contains("invalid size -1"));
  // Bug fixed: a negative size other than -1 on a size-1 dim was accepted and made a negative-size array.
  REQUIRE_THROWS_WITH(a.expand({3, -2}), Contains("invalid size -2"));
  // Writing through an expanded view writes the one shared element.
  Array b = Array::zeros({1, 2});
  Array eb = b.expand({3, 2});
  eb.set({2, 1}, 7);
  REQUIRE(eb.at({0, 1}) == 7);
  REQUIRE(b.to_vector() == std::vector<double>{0, 7});
}

TEST_CASE("unsqueeze and squeeze", "[array][view]") {
  Array a = arange_f64({2, 3});
  REQUIRE(a.unsqueeze(0).shape() == Shape{1, 2, 3});
  REQUIRE(a.unsqueeze(1).shape() == Shape{2, 1, 3});
  REQUIRE(a.unsqueeze(2).shape() == Shape{2, 3, 1});
  REQUIRE(a.unsqueeze(-1).shape() == Shape{2, 3, 1});
  REQUIRE(a.unsqueeze(-3).shape() == Shape{1, 2, 3});
  REQUIRE(a.unsqueeze(1).is_contiguous());
  REQUIRE(a.unsqueeze(1).shares_storage(a));
  REQUIRE(a.unsqueeze(1).to_vector() == a.to_vector());
  REQUIRE_THROWS_WITH(a.unsqueeze(3), Contains("unsqueeze: dim 3 is out of range"));
  REQUIRE_THROWS_WITH(a.unsqueeze(-4), Contains("dim -4"));
  Array b = Array::zeros({1, 3, 1, 2});
  REQUIRE(b.squeeze().shape() == Shape{3, 2});
  REQUIRE(b.squeeze(2).shape() == Shape{1, 3, 2});
  REQUIRE(b.squeeze(-4).shape() == Shape{3, 1, 2});
  REQUIRE_THROWS_WITH(b.squeeze(1), Contains("squeeze: dim 1 of (1,3,1,2) has size 3, not 1"));
  REQUIRE(Array::zeros({1, 1}).squeeze().ndim() == 0);
  REQUIRE(Array::zeros({0, 1}).squeeze().shape() == Shape{0});
}

TEST_CASE("as_strided is checked against the storage", "[array][view]") {
  Array a = Array::arange(12, DType::F64);
  Array w = a.as_strided({3, 3}, {3, 1}, 3);  // rows 1..3
  REQUIRE(w.to_vector() == std::vector<double>{3, 4, 5, 6, 7, 8, 9, 10, 11});
  REQUIRE(w.shares_storage(a));
  Array win = a.as_strided({5, 4}, {2, 1}, 0);  // overlapping windows
  REQUIRE(win.at({4, 3}) == 11);
  Array rev = a.as_strided({12}, {-1}, 11);  // negative strides within bounds
  REQUIRE(rev.at({0}) == 11);
  REQUIRE(rev.at({11}) == 0);
  REQUIRE(rev.contiguous().to_vector() == std::vector<double>{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0});
  REQUIRE(a.as_strided({0, 100}, {100, 1}, 50).numel() == 0);  // nothing is reachable
  REQUIRE_THROWS_WITH(a.as_strided({3, 4}, {4, 1}, 1), Contains("reaches outside storage of 12 elements"));
  REQUIRE_THROWS_WITH(a.as_strided({12}, {-1}, 10), Contains("reaches outside"));
  REQUIRE_THROWS_WITH(a.as_strided({2}, {1}, -1), Contains("offset -1"));
  REQUIRE_THROWS_WITH(a.as_strided({2, 2}, {1}, 0), Contains("differ in length"));
  REQUIRE_THROWS_WITH(a.as_strided({-1}, {1}, 0), Contains("negative size"));
  // The bound is the whole storage, not the view it is called on.
  REQUIRE(a.narrow(0, 0, 2).as_strided({12}, {1}, 0).at({11}) == 11);
  // A float32 storage has half as many elements per byte as a float64 one.
  Array f = Array::zeros({6});
  REQUIRE_NOTHROW(f.as_strided({6}, {1}, 0));
  REQUIRE_THROWS(f.as_strided({7}, {1}, 0));
}

// ---------------------------------------------------------------- copies

TEST_CASE("copy_ converts dtypes and checks broadcasting", "[array][copy]") {
  Array d = Array::zeros({2, 3});
  d.copy_(Array::from_vector(std::vector<int64_t>{1, -2, 3}, {3}));
  REQUIRE(d.to_vector() == std::vector<double>{1, -2, 3, 1, -2, 3});
  d.copy_(Array::scalar(2.5, DType::F64));
  REQUIRE(d.to_vector() == std::vector<double>(6, 2.5));
  d.copy_(Array::from_vector(std::vector<float>{7, 8}, {2, 1}));
  REQUIRE(d.to_vector() == std::vector<double>{7, 7, 7, 8, 8, 8});
  Array i = Array::zeros({3}, DType::I64);
  i.copy_(Array::from_vector(std::vector<double>{1.9, -1.9, 3}, {3}));  // truncation toward zero, as C++ casts
  REQUIRE(i.to_ints() == std::vector<int64_t>{1, -1, 3});
  REQUIRE_THROWS_WITH(d.copy_(Array::zeros({4})), Contains("copy_: cannot broadcast src (4,) to destination (2,3)"));
  REQUIRE_THROWS_WITH(d.copy_(Array::zeros({1, 2, 3})), Contains("cannot broadcast src (1,2,3)"));
  REQUIRE_THROWS_WITH(d.copy_(Array()), Contains("undefined"));
  // size-0 destinations accept any broadcastable src and touch nothing.
  Array z = Array::zeros({0, 3});
  z.copy_(Array::ones({3}));
  z.copy_(Array::ones({1, 1}));
  REQUIRE_THROWS(z.copy_(Array::ones({2, 3})));
}

TEST_CASE("copy_ between overlapping views of one storage", "[array][copy]") {
  // Bug fixed: copy_ read elements it had already overwritten when src and destination overlapped.
  Array a = arange_f64({4, 4});
  Array before = a.clone();
  a.copy_(a.mT());
  for (const Index& i : all_indices({4, 4})) REQUIRE(a.at(i) == before.at({i[1], i[0]}));
  // Shift right by one along a row (src and dst overlap, src is behind dst).
  Array r = Array::arange(8, DType::F64);
  r.slice(0, 1, 8).copy_(r.slice(0, 0, 7));
  REQUIRE(r.to_vector() == std::vector<double>{0, 0, 1, 2, 3, 4, 5, 6});
  // Reverse in place through a negative-stride view.
  Array v = Array::arange(6, DType::F64);
  v.copy_(v.as_strided({6}, {-1}, 5));
  REQUIRE(v.to_vector() == std::vector<double>{5, 4, 3, 2, 1, 0});
  // Disjoint parts of one storage, and a copy onto itself.
  Array m = arange_f64({3, 2});
  m.select(0, 0).copy_(m.select(0, 2));
  REQUIRE(m.to_vector() == std::vector<double>{4, 5, 2, 3, 4, 5});
  m.copy_(m);
  REQUIRE(m.to_vector() == std::vector<double>{4, 5, 2, 3, 4, 5});
  // Broadcasting one row of a matrix over the whole matrix.
  Array b = arange_f64({3, 2});
  b.copy_(b.select(0, 1));
  REQUIRE(b.to_vector() == std::vector<double>{2, 3, 2, 3, 2, 3});
}

TEST_CASE("copies of large arrays (memcpy and threaded paths)", "[array][copy]") {
  const int saved = num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    INFO("threads " << num_threads());
    Generator g(5);
    const int64_t R = 517, C = 613;  // 316921 elements, above the parallel threshold; odd sizes
    Array a = Array::uniform({R, C}, g);
    std::vector<float> av = a.to_floats();
    // contiguous -> contiguous, same dtype (memcpy).
    Array c = a.clone();
    REQUIRE(std::memcmp(c.data<float>(), a.data<float>(), sizeof(float) * R * C) == 0);
    // transpose -> packed.
    Array t = a.mT().contiguous();
    REQUIRE(t.shape() == Shape{C, R});
    bool ok = true;
    for (int64_t i = 0; i < C && ok; ++i)
      for (int64_t j = 0; j < R && ok; ++j) ok = t.data<float>()[i * R + j] == av[j * C + i];
    REQUIRE(ok);
    // a converting copy of a stepped slice.
    Array s = a.slice(1, 1, C, 2).to(DType::F64);
    ok = true;
    for (int64_t i = 0; i < R && ok; ++i)
      for (int64_t j = 0; j < (C - 1) / 2 && ok; ++j)
        ok = s.data<double>()[i * ((C - 1) / 2) + j] == static_cast<double>(av[i * C + 1 + 2 * j]);
    REQUIRE(ok);
    // broadcast a row into a non-contiguous destination (columns 3.. of a wider array), then fill a strided view.
    Array wide = Array::zeros({R, C + 5});
    Array row = Array::arange(C);
    wide.narrow(1, 3, C).copy_(row);
    ok = true;
    for (int64_t i = 0; i < R && ok; ++i)
      for (int64_t j = 0; j < C + 5 && ok; ++j)
        ok = wide.data<float>()[i * (C + 5) + j] == (j >= 3 && j < C + 3 ? float(j - 3) : 0.0f);
    REQUIRE(ok);
    wide.mT().slice(0, 0, C + 5, 2).fill_(-1);  // every other column
    ok = true;
    for (int64_t i = 0; i < R && ok; ++i)
      for (int64_t j = 0; j < C + 5 && ok; ++j)
        if (j % 2 == 0) ok = wide.data<float>()[i * (C + 5) + j] == -1.0f;
    REQUIRE(ok);
    Array big = Array::full({R, C}, 3.25, DType::F64);
    std::vector<double> bv = big.to_vector();
    REQUIRE(std::count(bv.begin(), bv.end(), 3.25) == R * C);
  }
  set_num_threads(saved);
}

TEST_CASE("creation functions", "[array]") {
  REQUIRE(Array::zeros({2, 2}).to_vector() == std::vector<double>(4, 0));
  REQUIRE(Array::ones({3}, DType::I64).to_ints() == std::vector<int64_t>{1, 1, 1});
  REQUIRE(Array::full({2}, -1.5, DType::F64).to_vector() == std::vector<double>{-1.5, -1.5});
  REQUIRE(Array::arange(4, DType::I64).to_ints() == std::vector<int64_t>{0, 1, 2, 3});
  Array s = Array::scalar(3);
  REQUIRE(s.ndim() == 0);
  REQUIRE(s.numel() == 1);
  REQUIRE(s.item() == 3);
  REQUIRE(Array::empty({0}).numel() == 0);
  REQUIRE(Array::empty({2, 3}).is_contiguous());
  REQUIRE(Array::empty({3, 0, 2}).strides() == Strides{2, 2, 1});
  // Any array without elements is contiguous (bug fixed: it depended on where the 0 was and on later strides).
  Array e0 = Array::zeros({4, 3}).mT().narrow(0, 0, 0);  // shape (0,4), strides (1,3)
  REQUIRE(e0.strides() == Strides{1, 3});
  REQUIRE(e0.is_contiguous());
  REQUIRE(e0.contiguous().shares_storage(e0));
  REQUIRE(reinterpret_cast<uintptr_t>(Array::empty({3}).data<float>()) % 64 == 0);
  REQUIRE_THROWS_WITH(Array::empty({2, -1}), Contains("negative size in shape (2,-1)"));
  REQUIRE_THROWS_WITH(Array::arange(-1), Contains("got -1"));
  REQUIRE_THROWS_WITH(Array::from_vector(std::vector<float>{1, 2, 3}, {2, 2}),
                      Contains("3 values do not fill shape (2,2)"));
  Generator g(0);
  REQUIRE_THROWS_WITH(Array::uniform({2}, g, 0, 1, DType::I64), Contains("expected a floating-point tensor, got int64"));
  Array big = Array::from_vector(std::vector<int64_t>{(int64_t{1} << 53) + 1, -7}, {2});
  REQUIRE(big.to_ints() == std::vector<int64_t>{(int64_t{1} << 53) + 1, -7});
  REQUIRE_THROWS_WITH(Array::zeros({2}).to_ints(), Contains("expected an int64 array, got float32"));
  REQUIRE_THROWS_WITH(Array::zeros({2}).data<double>(), Contains("data<float64>: the array is float32"));
  Array u;
  REQUIRE_FALSE(u.defined());
  REQUIRE(u.to_vector().empty());
  REQUIRE_THROWS_WITH(u.item(), Contains("undefined"));
  REQUIRE_THROWS_WITH(u.clone(), Contains("undefined"));
  REQUIRE_THROWS_WITH(u.view({1}), Contains("undefined"));
}

// ---------------------------------------------------------------- element access and errors

TEST_CASE("at/set/item: bounds checks name the offending index", "[array][errors]") {
  Array a = arange_f64({3, 4});
  REQUIRE(a.at({-1, -1}) == 11);
  REQUIRE(a.at({-3, 0}) == 0);
  a.set({1, -2}, 99);
  REQUIRE(a.at({1, 2}) == 99);
  REQUIRE_THROWS_AS(a.at({3, 0}), Error);
  REQUIRE_THROWS_WITH(a.at({0, 17}), Contains("at: index 17 is out of range for dim 1 of size 4"));
  REQUIRE_THROWS_WITH(a.at({-4, 0}), Contains("index -4"));
  REQUIRE_THROWS_WITH(a.set({0, -9}, 1), Contains("set: index -9 is out of range for dim 1 of size 4"));
  REQUIRE_THROWS_WITH(a.at({0}), Contains("at: expected 2 indices for shape (3,4), got 1"));
  REQUIRE_THROWS_WITH(a.item(), Contains("item: expected a tensor with one element, got shape (3,4)"));
  REQUIRE(a.narrow(0, 1, 1).narrow(1, 2, 1).item() == 99);
  REQUIRE(a.size(-1) == 4);
  REQUIRE(a.stride(0) == 4);
  REQUIRE_THROWS_WITH(a.size(2), Contains("size: dim 2 is out of range for a tensor with 2 dims"));
}

TEST_CASE("broadcast_shapes", "[array][errors]") {
  REQUIRE(broadcast_shapes({3, 4}, {4}, "add") == Shape{3, 4});
  REQUIRE(broadcast_shapes({1}, {1, 1}, "add") == Shape{1, 1});
  REQUIRE(broadcast_shapes({}, {2, 3}, "add") == Shape{2, 3});
  REQUIRE(broadcast_shapes({5, 1, 3}, {4, 1}, "add") == Shape{5, 4, 3});
  REQUIRE(broadcast_shapes({0, 3}, {1, 3}, "add") == Shape{0, 3});
  REQUIRE(broadcast_shapes({1, 3}, {0, 1}, "add") == Shape{0, 3});
  REQUIRE(broadcast_shapes({0}, {1}, "add") == Shape{0});
  REQUIRE(broadcast_shapes({0}, {}, "add") == Shape{0});
  try {
    broadcast_shapes({3, 4}, {5}, "add");
    FAIL("no throw");
  } catch (const Error& e) {
    REQUIRE(std::string(e.what()) == "add: cannot broadcast (3,4) with (5,)");
  }
  REQUIRE_THROWS_WITH(broadcast_shapes({0}, {2}, "mul"), "mul: cannot broadcast (0,) with (2,)");
  REQUIRE_THROWS_WITH(broadcast_shapes({2, 3}, {3, 3}, "sub"), "sub: cannot broadcast (2,3) with (3,3)");
  REQUIRE(shape_str({}) == "()");
  REQUIRE(shape_str({7}) == "(7,)");
  REQUIRE(shape_str({2, 0, 3}) == "(2,0,3)");
  REQUIRE(shape_numel({}) == 1);
  REQUIRE(shape_numel({2, 0}) == 0);
  REQUIRE(contiguous_strides({2, 3, 4}) == Strides{12, 4, 1});
  REQUIRE(wrap_dim(-1, 3, "x") == 2);
  REQUIRE_THROWS_WITH(wrap_dim(-4, 3, "sum"), "sum: dim -4 is out of range for a tensor with 3 dims");
}

// ---------------------------------------------------------------- printing

TEST_CASE("str() prints shape, strides, dtype and values", "[array][print]") {
  REQUIRE(Array::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).str() ==
          "Array(shape=(2,3), strides=(3,1), float32)\n"
          "[[1, 2, 3],\n"
          " [4, 5, 6]]");
  REQUIRE(Array::from_vector(std::vector<double>{0.5, -1.25}, {2}).str() ==
          "Array(shape=(2,), strides=(1,), float64)\n[0.5, -1.25]");
  REQUIRE(Array::scalar(3.5).str() == "Array(shape=(), strides=(), float32)\n3.5");
  REQUIRE(Array::zeros({0}).str() == "Array(shape=(0,), strides=(1,), float32)\n[]");
  REQUIRE(Array::zeros({2, 0}).values_str() == "[[],\n []]");
  REQUIRE(Array::arange(3, DType::I64).str() == "Array(shape=(3,), strides=(1,), int64)\n[0, 1, 2]");
  // Views show their strides and offset.
  REQUIRE(Array::arange(6).slice(0, 2, 6, 2).str() == "Array(shape=(2,), strides=(2,), offset=2, float32)\n[2, 4]");
  REQUIRE(arange_f64({2, 2}).mT().values_str() == "[[0, 2],\n [1, 3]]");
  REQUIRE(Array::scalar(2).expand({2, 2}).str() == "Array(shape=(2,2), strides=(0,0), float32)\n[[2, 2],\n [2, 2]]");
  // nan / inf.
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  REQUIRE(Array::from_vector(std::vector<float>{float(nan), float(inf), float(-inf), 1e-8f}, {4}).values_str() ==
          "[nan, inf, -inf, 1e-08]");
  REQUIRE(Array::from_vector(std::vector<double>{-nan}, {1}).values_str() == "[nan]");
  // float32 shows 5 significant digits, float64 8.
  REQUIRE(Array::full({1}, 1.0 / 3).values_str() == "[0.33333]");
  REQUIRE(Array::full({1}, 1.0 / 3, DType::F64).values_str() == "[0.33333333]");
  // int64 prints exactly, even where a double cannot hold the value (bug fixed: printed ...992).
  REQUIRE(Array::from_vector(std::vector<int64_t>{(int64_t{1} << 53) + 1, std::numeric_limits<int64_t>::min()}, {2})
              .values_str() == "[9007199254740993, -9223372036854775808]");
  REQUIRE(Array().str() == "Array(undefined)");
  std::ostringstream os;
  os << Array::scalar(1);
  REQUIRE(os.str() == Array::scalar(1).str());
}

TEST_CASE("str() elides the middle of big dims", "[array][print]") {
  REQUIRE(Array::arange(10).values_str() == "[0, 1, 2, ..., 7, 8, 9]");
  REQUIRE(Array::arange(7).values_str() == "[0, 1, 2, 3, 4, 5, 6]");  // 2*3+1 fits
  REQUIRE(Array::arange(8).values_str(1) == "[0, ..., 7]");
  REQUIRE(Array::arange(3).values_str(1) == "[0, 1, 2]");
  REQUIRE(Array::arange(5).values_str(0) == "[...]");
  REQUIRE(arange_f64({5, 5}).values_str(1) ==
          "[[0, ..., 4],\n"
          " ...,\n"
          " [20, ..., 24]]");
  REQUIRE(arange_f64({2, 4, 4}).values_str(1) ==
          "[[[0, ..., 3],\n"
          "  ...,\n"
          "  [12, ..., 15]],\n"
          " [[16, ..., 19],\n"
          "  ...,\n"
          "  [28, ..., 31]]]");
  // A huge array prints quickly and small.
  std::string s = Array::zeros({1000, 1000}).str();
  REQUIRE(s.size() < 300);
  REQUIRE(s.find("...") != std::string::npos);
}

// ---------------------------------------------------------------- storage lifetime

TEST_CASE("Storage::live_count returns to its baseline", "[array][storage]") {
  const int64_t base_count = Storage::live_count();
  const int64_t base_bytes = Storage::live_bytes();
  {
    Array a = Array::zeros({10, 10});
    REQUIRE(Storage::live_count() == base_count + 1);
    REQUIRE(Storage::live_bytes() == base_bytes + 400);
    Array v = a.mT().slice(0, 1, 5).unsqueeze(0).expand({3, 4, 10});  // views: no new storage
    REQUIRE(Storage::live_count() == base_count + 1);
    Array c = v.contiguous();  // a copy
    Array d = a.contiguous();  // not a copy
    REQUIRE(Storage::live_count() == base_count + 2);
    Array r = a.mT().reshape({100});  // a copy
    REQUIRE(Storage::live_count() == base_count + 3);
    a = Array();  // views keep the storage alive
    REQUIRE(Storage::live_count() == base_count + 3);
    REQUIRE(v.at({2, 3, 9}) == 0);
    v.copy_(Array::ones({10}));
    REQUIRE(Storage::live_count() == base_count + 3);
  }
  REQUIRE(Storage::live_count() == base_count);
  REQUIRE(Storage::live_bytes() == base_bytes);
  {
    Array x = Array::arange(16, DType::F64).reshape({4, 4});
    x.copy_(x.mT());  // the overlap path makes a temporary copy and frees it
    std::vector<Array> many;
    for (int i = 0; i < 50; ++i) many.push_back(x.clone().mT());
  }
  REQUIRE(Storage::live_count() == base_count);
  REQUIRE(Storage::live_bytes() == base_bytes);
  {  // big blocks take another allocation path (huge pages on Linux): same accounting, aligned, usable
    Array big = Array::zeros({3, 1000, 1001});  // 12 MB
    REQUIRE(Storage::live_bytes() == base_bytes + 3 * 1000 * 1001 * 4);
    REQUIRE(reinterpret_cast<uintptr_t>(big.data<float>()) % 64 == 0);
    big.select(2, -1).fill_(2);
    REQUIRE(big.at({2, 999, 1000}) == 2);
    REQUIRE(big.at({2, 999, 999}) == 0);
    Array c = big.to(DType::F64);
    REQUIRE(Storage::live_count() == base_count + 2);
  }
  REQUIRE(Storage::live_count() == base_count);
  REQUIRE(Storage::live_bytes() == base_bytes);
}

TEST_CASE("a shape given to check() prints in its message as shape_str writes it", "[array][error]") {
  // check(ok, "got ", x.shape()) formats the shape only when ok is false (tensor/error.h).
  for (const Shape& s : {Shape{}, Shape{5}, Shape{4, 3}, Shape{2, 0, 7}}) {
    INFO(shape_str(s));
    CHECK_THROWS_WITH(check(false, "got ", s, "."), "got " + shape_str(s) + ".");
    CHECK_NOTHROW(check(true, "got ", s));
  }
  CHECK(shape_str({}) == "()");
  CHECK(shape_str({5}) == "(5,)");
  CHECK(shape_str({4, 3}) == "(4,3)");
  // An op's message, shapes and all.
  CHECK_THROWS_WITH(Array::ones({2, 3}).permute({0, 0}), "permute: dim 0 appears twice in (0,0)");
}
