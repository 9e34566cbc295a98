// Seeing inside a graph.
//   print_graph(loss)          one line per node, outputs first: "#2 MatmulBackward (4,5) <- #3 #4"
//   to_dot(loss, "g.dot")      a Graphviz file (dot -Tpng g.dot -o g.png): ops as boxes, leaves as ellipses
//                              (parameters, i.e. named leaves, in green), each with its shape and value/grad stats
#pragma once
#include <string>

#include "autograd/tensor.h"

namespace qkvlab {

std::string print_graph(const Tensor& t);
void to_dot(const Tensor& t, const std::string& path);
std::string to_dot_string(const Tensor& t);

}  // namespace qkvlab
