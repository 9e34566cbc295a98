// Data-parallel training over MPI (models/distributed.h). Built only with `make MPI=1` (this file is empty in the
// normal build) and run on 2 ranks: `make MPI=1 test-mpi`, i.e. mpirun -np 2 build/mpi/qkvlab_mpi_tests "[mpi]".
// The cases are hidden ([.]) so that a run without mpirun does not pick them up by accident.
//
// What is checked: N ranks with batch b each train the same parameters as 1 rank with batch N*b on the same data
// (within float tolerance: the mean gradient is summed in another order); a checkpoint of an N-rank run resumes
// exactly on N ranks and, with batch N*b, on 1 rank; the ranks' parameters stay bit-identical; and only rank 0
// writes files.
#ifdef QKVLAB_MPI
#include <catch2/catch.hpp>
#define OMPI_SKIP_MPICXX 1  // the C API only: Open MPI's deprecated C++ bindings warn under -Wextra
#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <string>

#include "models/checkpoint.h"
#include "models/distributed.h"
#include "models/trainer.h"
#include "tensor/parallel.h"
#include "tests/test_util.h"

using namespace qkvlab;

namespace {

// MPI starts on first use; every rank runs one kernel thread (2 ranks share 2 cores).
int world() {
  dist::init(nullptr, nullptr);
  set_num_threads(1);
  return dist::size();
}

// A folder every rank sees: rank 0 makes it, the others get its name; rank 0 removes it at the end.
struct SharedDir {
  std::string path;
  SharedDir() {
    char name[256] = {0};
    if (dist::rank() == 0) {
      std::string tmpl = "/tmp/qkvlab_mpi_XXXXXX";
      REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
      std::snprintf(name, sizeof name, "%s", tmpl.c_str());
    }
    MPI_Bcast(name, sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD);
    path = name;
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    std::error_code ec;
    if (dist::rank() == 0) std::filesystem::remove_all(path, ec);
  }
  std::string sub(const std::string& name) const {
    std::filesystem::create_directories(path + "/" + name);
    return path + "/" + name;
  }
};

std::unique_ptr<TaskData> reverse_task() {  // the paper's REVERSE task, small: 64 training sequences of 8 digits
  TaskOptions t;
  t.task = "reverse";
  t.seq_len = 8;
  t.train_size = 64;
  t.test_size = 16;
  t.seed = 3;
  return make_task(t);
}

std::unique_ptr<TransformerModel> tiny_model(const TaskData& data, const std::string& variant) {
  ModelConfig c;
  c.task = "reverse";
  c.variant = parse_variant(variant);
  c.d_model = 16;
  c.n_heads = 2;
  c.n_layers = 1;
  data.configure(c);
  c.resolve();
  return make_model(c, 11);
}

TrainOptions options(int64_t batch, int64_t steps) {
  TrainOptions o;
  o.batch = batch;
  o.steps = steps;
  o.lr = 3e-3;
  o.warmup_ratio = 0.25;
  o.weight_decay = 0.01;
  o.eval_examples = 8;
  o.seed = 5;
  o.verbose = false;
  return o;
}

// The key bias and the positional score's bias add the same amount to every score of a query's row, and softmax
// ignores that: their exact gradient is 0, so what reaches them is float rounding (~1e-9), which depends on the
// summation order. Adam divides by the gradient's own size, turning that noise into steps of up to lr either way,
// so those two are compared only against that bound (see no_true_gradient below).
bool no_true_gradient(const std::string& name) {
  auto ends = [&](const std::string& tail) {
    return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  return ends("attn.k.bias") || ends("attn.pe.bias");
}

// Largest |a - b| over the parameters of two models of the same config: those with a true gradient, or (rounding
// = true) only those without one.
double max_param_diff(const TransformerModel& a, const TransformerModel& b, bool rounding = false) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return INFINITY;  // no REQUIRE here: it would skip the collective calls after it
  double worst = 0.0;
  for (size_t i = 0; i < pa.size(); ++i) {
    if (pa[i].first != pb[i].first) return INFINITY;
    if (no_true_gradient(pa[i].first) != rounding) continue;
    auto va = pa[i].second.data().to_vector(), vb = pb[i].second.data().to_vector();
    if (va.size() != vb.size()) return INFINITY;
    for (size_t j = 0; j < va.size(); ++j) worst = std::max(worst, std::abs(va[j] - vb[j]));
  }
  return worst;
}

double max_param_diff_all(const TransformerModel& a, const TransformerModel& b) {
  return std::max(max_param_diff(a, b), max_param_diff(a, b, true));
}

// How far a model moved from its initial weights (the yardstick for the tolerance above).
double max_param_change(const TransformerModel& trained, const TaskData& data, const std::string& variant) {
  return max_param_diff(trained, *tiny_model(data, variant));
}

}  // namespace

TEST_CASE("data-parallel: N ranks with batch b train what 1 rank trains with batch N*b", "[.][mpi]") {
  const int n = world();
  REQUIRE(n >= 2);  // run under mpirun -np 2 (make MPI=1 test-mpi)
  for (std::string variant : {"qkv", "kv+"}) {
    INFO("variant " << variant);
    auto data_dp = reverse_task(), data_one = reverse_task();
    auto dp = tiny_model(*data_dp, variant), one = tiny_model(*data_one, variant);

    TrainResult r_dp = train_model(*dp, *data_dp, options(4, 6));  // 4 per rank, N*4 per step
    TrainOptions o1 = options(4 * n, 6);
    o1.data_parallel = false;  // every rank, alone, the reference
    TrainResult r_one = train_model(*one, *data_one, o1);

    CHECK(dist::parameters_agree(dp->parameters()));
    const double diff = max_param_diff(*dp, *one), moved = max_param_change(*one, *data_one, variant);
    INFO("max |dp - single| = " << diff << ", max change from the initial weights = " << moved);
    CHECK(moved > 1e-3);      // it trained: 6 AdamW steps at lr 3e-3 move weights by ~1e-2
    CHECK(diff < 1e-5);       // summation order is all that differs
    // The biases without a true gradient: each Adam step moves them by at most about lr (here 6 steps at 3e-3).
    CHECK(max_param_diff(*dp, *one, true) <= 6 * 2 * 3e-3);
    REQUIRE(r_dp.losses.size() == r_one.losses.size());
    for (size_t i = 0; i < r_dp.losses.size(); ++i)  // the logged loss is the global batch's mean
      CHECK(r_dp.losses[i].second == Approx(r_one.losses[i].second).epsilon(1e-5));
    // The sampler and the data generator moved on as for one rank with the global batch.
    CHECK(data_dp->sampler_state() == data_one->sampler_state());
  }
}

TEST_CASE("data-parallel: a checkpoint of an N-rank run resumes on N ranks and on 1 rank", "[.][mpi]") {
  const int n = world();
  REQUIRE(n >= 2);
  SharedDir dir;
  const std::string variant = "qk+";

  // The whole run on N ranks, 8 steps, for reference; only rank 0 writes its files.
  std::string full = dir.sub("full");
  auto data_full = reverse_task();
  auto m_full = tiny_model(*data_full, variant);
  TrainOptions of = options(4, 8);
  of.out_dir = full;
  train_model(*m_full, *data_full, of);
  MPI_Barrier(MPI_COMM_WORLD);
  CHECK(std::filesystem::exists(full + "/model.safetensors"));
  CHECK(std::filesystem::exists(full + "/metrics.jsonl"));
  CHECK_FALSE(std::filesystem::exists(full + "/model.safetensors.tmp." + std::to_string(::getpid())));

  // The same run stopped after 4 steps on N ranks (it saves a checkpoint)...
  std::string half = dir.sub("half");
  auto data_a = reverse_task();
  auto m_a = tiny_model(*data_a, variant);
  TrainOptions oa = options(4, 8);
  oa.out_dir = half;
  oa.stop_after = 4;
  TrainResult ra = train_model(*m_a, *data_a, oa);
  CHECK(ra.interrupted);
  CHECK(ra.steps == 4);
  MPI_Barrier(MPI_COMM_WORLD);

  SECTION("...continues on N ranks bit for bit") {
    auto data_b = reverse_task();
    auto m_b = tiny_model(*data_b, variant);
    TrainOptions ob = options(4, 8);
    ob.out_dir = half;
    ob.resume = true;
    TrainResult rb = train_model(*m_b, *data_b, ob);
    CHECK(rb.steps == 8);
    CHECK(max_param_diff_all(*m_b, *m_full) == 0.0);
    CHECK(data_b->sampler_state() == data_full->sampler_state());
  }
  SECTION("...continues on 1 rank with the global batch, within float tolerance") {
    // Rank 0 alone, in a copy of the run directory, while the other ranks wait at the barrier below; an exception
    // must not skip that barrier, or the others would wait forever.
    if (dist::rank() == 0) try {
      std::string solo = dir.sub("solo");
      // copy_symlinks: DIR/checkpoint is a symlink to step-N (models/run_dir.h), to be copied as one
      std::filesystem::copy(half, solo, std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks |
                                            std::filesystem::copy_options::overwrite_existing);
      auto data_c = reverse_task();
      auto m_c = tiny_model(*data_c, variant);
      TrainOptions oc = options(4 * n, 8);
      oc.out_dir = solo;
      oc.resume = true;
      oc.data_parallel = false;
      TrainResult rc = train_model(*m_c, *data_c, oc);
      CHECK(rc.steps == 8);
      const double diff = max_param_diff(*m_c, *m_full);
      INFO("max |resumed on 1 rank - N ranks throughout| = " << diff);
      CHECK(diff < 1e-5);
      CHECK(max_param_diff(*m_c, *m_full, true) <= 8 * 2 * 3e-3);  // no true gradient: Adam steps of up to ~lr
      CHECK(data_c->sampler_state() == data_full->sampler_state());
      auto saved = load_model(solo);
      CHECK(max_param_diff_all(*saved, *m_c) == 0.0);
    } catch (const std::exception& e) {
      FAIL_CHECK("resuming on 1 rank threw: " << e.what());
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

TEST_CASE("data-parallel: ranks that start from different weights are refused", "[.][mpi]") {
  const int n = world();
  REQUIRE(n >= 2);
  auto data = reverse_task();
  auto m = tiny_model(*data, "qkv");
  if (dist::rank() == 1) {  // one rank's copy differs in one number
    Array w = m->parameters()[0].data();
    w.data<float>()[0] += 1.0f;
  }
  CHECK_FALSE(dist::parameters_agree(m->parameters()));
  CHECK_THROWS_WITH(train_model(*m, *data, options(4, 2)), Catch::Matchers::Contains("parameters differ"));
}
#endif  // QKVLAB_MPI
