#include "autograd/graph.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace qkvlab {

namespace {
// Nodes reachable from t's node, outputs first (breadth-first, iterative), each with a stable id.
std::vector<Node*> collect(const Tensor& t, std::unordered_map<Node*, int>& ids) {
  std::vector<Node*> order;
  Node* root = t.grad_fn() ? t.grad_fn().get() : t.impl()->grad_accumulator.lock().get();
  if (!root) return order;
  ids[root] = 0;
  order.push_back(root);
  for (size_t i = 0; i < order.size(); ++i)
    for (auto& e : order[i]->next)
      if (e && !ids.count(e.get())) {
        ids[e.get()] = static_cast<int>(order.size());
        order.push_back(e.get());
      }
  return order;
}

std::string stats(const Array& a) {
  if (!a.defined() || a.numel() == 0) return "-";
  std::vector<double> v = a.to_vector();
  double mn = v[0], mx = v[0], s = 0;
  for (double x : v) {
    mn = std::min(mn, x);
    mx = std::max(mx, x);
    s += x;
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "mean %.3g min %.3g max %.3g", s / double(v.size()), mn, mx);
  return buf;
}

// DOT labels are double-quoted strings: escape quotes and backslashes (a parameter name may contain either).
std::string dot_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string leaf_label(const Node* n) {
  auto* acc = dynamic_cast<const AccumulateGrad*>(n);
  if (!acc) return "";
  auto leaf = acc->leaf.lock();
  if (!leaf) return "leaf (freed)";
  return leaf->name.empty() ? "leaf" : "leaf '" + leaf->name + "'";
}
}  // namespace

std::string print_graph(const Tensor& t) {
  std::unordered_map<Node*, int> ids;
  std::vector<Node*> order = collect(t, ids);
  if (order.empty()) return "(no graph: the tensor does not require grad)\n";
  std::ostringstream os;
  for (Node* n : order) {
    std::string label = dynamic_cast<AccumulateGrad*>(n) ? leaf_label(n) : n->name();
    os << "#" << ids[n] << " " << label << " " << shape_str(n->output_shape);
    bool first = true;
    for (auto& e : n->next) {
      if (!e) continue;
      os << (first ? " <- " : " ") << "#" << ids[e.get()];
      first = false;
    }
    if (n->released) os << " [freed]";
    os << "\n";
  }
  return os.str();
}

std::string to_dot_string(const Tensor& t) {
  std::unordered_map<Node*, int> ids;
  std::vector<Node*> order = collect(t, ids);
  std::ostringstream os;
  os << "digraph autograd {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  for (Node* n : order) {
    int id = ids[n];
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
      auto leaf = acc->leaf.lock();
      bool param = leaf && !leaf->name.empty();
      os << "  n" << id << " [shape=ellipse, style=filled, fillcolor=\"" << (param ? "#c8e6c9" : "#e3f2fd")
         << "\", label=\"" << dot_escape(leaf_label(n)) << "\\n" << shape_str(n->output_shape);
      if (leaf) os << "\\nvalue: " << stats(leaf->data) << "\\ngrad: " << stats(leaf->grad);
      os << "\"];\n";
    } else {
      os << "  n" << id << " [shape=box, style=filled, fillcolor=\"#fff3e0\", label=\"" << n->name() << "\\n"
         << shape_str(n->output_shape);
      if (auto out = n->output.lock()) os << "\\nvalue: " << stats(out->data);
      os << "\"];\n";
    }
  }
  for (Node* n : order)
    for (auto& e : n->next)
      if (e) os << "  n" << ids[e.get()] << " -> n" << ids[n] << ";\n";
  os << "}\n";
  return os.str();
}

void to_dot(const Tensor& t, const std::string& path) {
  std::ofstream f(path);
  check(bool(f), "to_dot: cannot write ", path);
  f << to_dot_string(t);
  check(bool(f), "to_dot: write to ", path, " failed");
}

}  // namespace qkvlab
