// A small program to step through in gdb (docs/DEBUGGING.md). Build it against the debug library:
//   make debug     # build/debug/libqkvlab.a, -O0 -g3 with sanitizers
//   g++ -std=c++20 -O0 -g3 -fsanitize=address,undefined -fopenmp -I. tools/gdb/demo.cpp \
//       build/debug/libqkvlab.a -lz -lpthread -o build/debug/gdb_demo
//   gdb -x .gdbinit build/debug/gdb_demo
#include <cstdio>

#include "autograd/graph.h"
#include "autograd/ops.h"

using namespace qkvlab;

int main() {
  Tensor w(Array::from_vector(std::vector<float>{0.5f, -1.0f, 2.0f, 0.25f, 3.0f, 1.5f}, {2, 3}), true);
  w.set_name("w");
  Tensor x(Array::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}));
  Tensor y = w * x;                  // MulBackward: saves w and x
  Tensor loss = sum(tanh(y));        // SumBackward <- TanhBackward <- MulBackward <- AccumulateGrad(w)
  std::printf("%s", print_graph(loss).c_str());
  loss.backward();                   // break qkvlab::MulBackward::backward to stop inside
  std::printf("loss %.6f\n", loss.item());
  Array wt = w.data().mT();          // a transposed view: (3,2), strides (1,3)
  std::printf("%s\n", wt.str().c_str());
  return 0;
}
