#include "nn/module.h"

#include <set>
#include <unordered_map>

namespace qkvlab {

Tensor& Module::register_parameter(const std::string& name, Tensor& param) {
  check(param.defined(), "register_parameter: ", name, " is undefined");
  for (auto& [n, p] : params_) check(n != name, "register_parameter: ", name, " is registered twice");
  param.requires_grad_(true);
  params_.emplace_back(name, &param);
  return param;
}

void Module::register_module(const std::string& name, Module& child) {
  for (auto& [n, m] : children_) check(n != name, "register_module: ", name, " is registered twice");
  children_.emplace_back(name, &child);
}

void Module::collect_parameters(const std::string& prefix,
                                std::vector<std::pair<std::string, Tensor>>& out) const {
  for (auto& [n, p] : params_) out.emplace_back(prefix + n, *p);
  for (auto& [n, m] : children_) m->collect_parameters(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_parameters("", out);
  for (auto& [n, t] : out)
    if (t.name() != n) t.set_name(n);  // so print_graph / to_dot show parameter names
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (size_t i = 0; i < out.size(); ++i) {
    auto [prefix, m] = out[i];
    for (auto& [n, c] : m->children_) out.emplace_back(prefix.empty() ? n : prefix + "." + n, c);
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

NamedArrays Module::state_dict() const {
  NamedArrays out;
  for (auto& [n, t] : named_parameters()) out.emplace_back(n, t.data());
  return out;
}

void Module::load_state_dict(const NamedArrays& state) {
  std::unordered_map<std::string, const Array*> given;
  for (auto& [n, a] : state) {
    check(!given.count(n), "load_state_dict: ", n, " is given twice");
    given[n] = &a;
  }
  auto params = named_parameters();
  std::set<std::string> known;
  for (auto& [n, t] : params) {
    known.insert(n);
    auto it = given.find(n);
    check(it != given.end(), "load_state_dict: missing tensor ", n, " of shape ", t.shape());
    check(it->second->shape() == t.shape(), "load_state_dict: ", n, ": expected shape ", t.shape(),
          ", got ", it->second->shape());
    check(it->second->dtype() != DType::I64, "load_state_dict: ", n, ": expected a floating-point tensor, got int64");
  }
  for (auto& [n, a] : state)
    check(known.count(n), "load_state_dict: unexpected tensor ", n, " of shape ", a.shape(),
          " (the model has no such parameter)");
  for (auto& [n, t] : params) {
    Array dst = t.data();
    dst.copy_(*given[n]);  // copy_ converts dtype; the model keeps its own
  }
}

void Module::to(DType dtype) {
  for (auto& [n, p] : params_) {
    if (p->dtype() == dtype) continue;
    std::string name = p->name();
    *p = Tensor(p->data().to(dtype), true);
    p->set_name(name);
  }
  for (auto& [n, m] : children_) m->to(dtype);
}

void Module::set_parameter(const std::string& name, const Tensor& t) {
  size_t dot = name.find('.');
  if (dot != std::string::npos) {
    std::string head = name.substr(0, dot);
    // Children may themselves have dotted names ("blocks.0"): try the longest registered prefix first.
    for (auto& [n, m] : children_)
      if (name.rfind(n + ".", 0) == 0) return m->set_parameter(name.substr(n.size() + 1), t);
  }
  for (auto& [n, p] : params_)
    if (n == name) {
      check(t.shape() == p->shape(), "set_parameter: ", name, ": expected shape ", p->shape(), ", got ",
            t.shape());
      *p = t;
      return;
    }
  fail("set_parameter: no parameter named ", name);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

void Module::print(std::string& out, const std::string& name, int depth) const {
  std::string pad(2 * depth, ' ');
  out += pad + (name.empty() ? "" : name + ": ") + type_name();
  std::string extra = extra_repr();
  if (!extra.empty()) out += "(" + extra + ")";
  int64_t own = 0;
  for (auto& [n, p] : params_) own += p->numel();
  if (children_.empty() && own) out += "  [" + std::to_string(own) + " params]";
  out += "\n";
  for (auto& [n, m] : children_) m->print(out, n, depth + 1);
}

std::string Module::str() const {
  std::string out;
  print(out, "", 0);
  out += "total parameters: " + std::to_string(num_parameters()) + "\n";
  return out;
}

}  // namespace qkvlab
