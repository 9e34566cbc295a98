// Module: the PyTorch-style container of parameters and submodules.
//
//   struct MLP : Module {
//     Linear fc, proj;
//     MLP(int64_t d, Generator& gen) : fc(d, 4 * d, gen), proj(4 * d, d, gen) {
//       register_module("fc", fc);
//       register_module("proj", proj);
//     }
//     Tensor forward(const Tensor& x) { return proj(gelu(fc(x))); }
//   };
//
// Parameters and submodules are members held by value and registered by name once, in the constructor; a Module
// is therefore neither copyable nor movable (the registry points at its members). named_parameters() gives
// dotted names ("blocks.0.attn.q.weight"), which are also the checkpoint's tensor names.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace qkvlab {

using NamedArrays = std::vector<std::pair<std::string, Array>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual std::string type_name() const { return "Module"; }
  virtual std::string extra_repr() const { return ""; }  // e.g. "in=64, out=192" in the printed tree

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, const Module*>> named_modules() const;  // this one first, as ""
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Weights as plain Arrays (shared with the parameters, not copied), in registration order.
  NamedArrays state_dict() const;
  // Copies values in. Every parameter must be present with the same shape and nothing extra may be given:
  // "load_state_dict: blocks.0.attn.q.weight: expected shape (64,64), got (64,32)".
  void load_state_dict(const NamedArrays& state);
  void to(DType dtype);          // converts every parameter (e.g. to float64 for gradcheck)
  // Replaces the parameter with this dotted name by `t` (same shape): how gradcheck makes its own leaves the
  // weights of a layer, so it can check d output / d weight through a whole module.
  void set_parameter(const std::string& name, const Tensor& t);
  void zero_grad();
  std::string str() const;       // the printable tree

 protected:
  Tensor& register_parameter(const std::string& name, Tensor& param);  // marks it requires_grad and names it
  void register_module(const std::string& name, Module& child);

 private:
  void collect_parameters(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  void print(std::string& out, const std::string& name, int depth) const;
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, Module*>> children_;
  bool training_ = true;
};

}  // namespace qkvlab
