// A seeded random generator that gives the same numbers on every machine and compiler:
// xoshiro256** seeded through splitmix64, uniform floats from the top 53 bits, normals by Box-Muller.
// (std::normal_distribution is implementation-defined, so it is not used anywhere.)
#pragma once
#include <cstdint>

namespace qkvlab {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();                 // 64 random bits
  double uniform();                    // in [0, 1)
  double uniform(double lo, double hi);
  double normal(double mean = 0.0, double std = 1.0);
  int64_t randint(int64_t lo, int64_t hi);  // in [lo, hi), unbiased

  // The full state, so a checkpoint can resume the exact stream.
  struct State {
    uint64_t s[4];
    double spare;
    bool has_spare;
  };
  State state() const { return {{s_[0], s_[1], s_[2], s_[3]}, spare_, has_spare_}; }
  void set_state(const State& st);

 private:
  uint64_t s_[4];
  double spare_ = 0.0;  // Box-Muller makes normals in pairs; the second is kept for the next call
  bool has_spare_ = false;
};

}  // namespace qkvlab
