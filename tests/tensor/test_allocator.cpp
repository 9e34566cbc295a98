// The big-block pool of tensor/allocator.h: reuse by size, never more mapped than the live high-water mark,
// and a training loop whose memory stays the same from step to step.
#include <catch2/catch.hpp>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#include "models/transformer.h"
#include "nn/optim.h"
#include "tensor/allocator.h"
#include "tensor/random.h"
#include "tests/lm_fixture.h"

using namespace qkvlab;

namespace {
// Off Linux and under ASan (which must see every block) there is no pool: say so rather than pass silently.
bool have_pool() {
  if (!block_pool_enabled()) WARN("this build has no big-block pool (not Linux, or AddressSanitizer): skipped");
  return block_pool_enabled();
}
}  // namespace

TEST_CASE("allocator: big blocks are aligned, writable and reused by size", "[allocator]") {
  if (!have_pool()) return;
  release_cached_blocks();
  const size_t mb = size_t{1} << 20;
  void* a = allocate_block(8 * mb);
  CHECK(reinterpret_cast<uintptr_t>(a) % (2 * mb) == 0);  // huge-page aligned
  std::memset(a, 1, 8 * mb);
  void* s = allocate_block(1000);                          // small: malloc, still 64-byte aligned
  CHECK(reinterpret_cast<uintptr_t>(s) % 64 == 0);
  free_block(s, 1000);
  const AllocatorStats before = allocator_stats();
  free_block(a, 8 * mb);
  CHECK(allocator_stats().cached_bytes == before.cached_bytes + int64_t(8 * mb));
  void* b = allocate_block(8 * mb);  // the same size: the cached block comes back, nothing new is mapped
  const AllocatorStats after = allocator_stats();
  CHECK(b == a);
  CHECK(after.hits == before.hits + 1);
  CHECK(after.mapped_bytes == before.mapped_bytes);
  free_block(b, 8 * mb);
  release_cached_blocks();
  CHECK(allocator_stats().cached_bytes == 0);
}

TEST_CASE("allocator: a freed block of up to 4 KiB comes back for the next request of its size, up to 2 MiB a thread",
          "[allocator]") {
  if (!have_pool()) return;
  release_cached_blocks();  // this thread's small-block cache starts empty
  void* a = allocate_block(1000);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  free_block(a, 1000);
  void* b = allocate_block(1020);  // the same 64-byte step (1024): the cached block
  CHECK(b == a);
  void* c = allocate_block(1000);  // none cached now: a new one
  CHECK(c != b);
  free_block(b, 1020);
  free_block(c, 1000);
  release_cached_blocks();
  // 600 blocks of 4 KiB freed: the first 512 (2 MiB) wait in the cache, the rest go back to malloc; the cache
  // hands its blocks back last in, first out, so the next request gets the 512th.
  const size_t kb4 = size_t{4} << 10;
  std::vector<void*> blocks(600);
  for (void*& p : blocks) p = allocate_block(kb4);
  for (void* p : blocks) free_block(p, kb4);
  std::vector<void*> got;
  for (int i = 511; i >= 0; --i) {
    got.push_back(allocate_block(kb4));
    CHECK(got.back() == blocks[size_t(i)]);
    std::memset(got.back(), 0xab, kb4);
  }
  for (void* p : got) free_block(p, kb4);
  release_cached_blocks();
}

TEST_CASE("allocator: what is mapped never exceeds the most bytes ever live at once", "[allocator]") {
  if (!have_pool()) return;
  release_cached_blocks();
  Generator g(3);
  struct Block {
    uint32_t* p;
    size_t bytes;
    uint32_t tag;
  };
  std::vector<Block> live;
  // The bound the pool must keep, computed here: the most (whole-page) bytes of this test's blocks live at once,
  // on top of whatever other tests left alive.
  const int64_t base = allocator_stats().mapped_bytes - allocator_stats().cached_bytes;
  int64_t live_bytes = 0, most = 0;
  auto pool_bytes = [](size_t bytes) {  // blocks of 8 MiB and more are whole 2 MiB huge pages (allocator.cpp)
    const size_t huge = size_t{2} << 20;
    return bytes >= 4 * huge ? (bytes + huge - 1) / huge * huge : bytes;
  };
  auto intact = [](const Block& b) {  // every word still holds the block's own tag: no other block overlaps it
    for (size_t i = 0; i < b.bytes / 4; i += 1021)
      if (b.p[i] != b.tag) return false;
    return b.p[b.bytes / 4 - 1] == b.tag;
  };
  for (uint32_t i = 0; i < 400; ++i) {
    if (!live.empty() && (g.uniform() < 0.5 || live.size() > 6)) {
      const size_t k = size_t(g.randint(0, int64_t(live.size())));
      REQUIRE(intact(live[k]));
      free_block(live[k].p, live[k].bytes);
      live_bytes -= int64_t(pool_bytes(live[k].bytes));
      live.erase(live.begin() + int64_t(k));
    } else {
      const size_t bytes = size_t(g.randint(1, 13)) << 20;  // 1 to 12 MiB, whole pages
      auto* p = static_cast<uint32_t*>(allocate_block(bytes));
      std::fill(p, p + bytes / 4, i);
      live.push_back({p, bytes, i});
      live_bytes += int64_t(pool_bytes(bytes));
      most = std::max(most, live_bytes);
    }
    const AllocatorStats st = allocator_stats();
    REQUIRE(st.mapped_bytes - st.cached_bytes == base + live_bytes);  // in use: exactly the live blocks
    const int64_t peak = base + most;  // this test's peak of live bytes (release_cached_blocks reset the mark)
    REQUIRE(st.bound == st.high_water + std::min<int64_t>(st.high_water / 8, int64_t{16} << 20));
    REQUIRE(st.mapped_bytes <= st.bound);
    REQUIRE(st.mapped_bytes <= peak + std::min<int64_t>(peak / 8, int64_t{16} << 20));
  }
  for (const Block& b : live) {
    CHECK(intact(b));
    free_block(b.p, b.bytes);
  }
  CHECK(allocator_stats().unmapped > 0);  // the bound forced cached blocks of other sizes out
  release_cached_blocks();
}

TEST_CASE("allocator: a training loop maps the same memory at step 4 and at step 12", "[allocator]") {
  GPT model(testing::lm_config("qkv", 64, 4, 2, 64, 65), 1);
  AdamW opt(make_param_groups(model, 0.01), 1e-3);
  const auto batch = testing::random_lm_batch(16, 64, 65, 2);
  const Array &x = batch.first, &y = batch.second;
  model.train();
  if (!have_pool()) return;
  release_cached_blocks();
  std::vector<AllocatorStats> st;
  for (int step = 1; step <= 12; ++step) {
    opt.zero_grad();
    model_loss(model, x, y).loss.backward();
    opt.step();
    st.push_back(allocator_stats());
  }
  CHECK(st[11].mapped_bytes == st[3].mapped_bytes);
  CHECK(st[11].high_water == st[3].high_water);
  // After the first steps nearly every big request is served from the cache.
  const int64_t hits = st[11].hits - st[3].hits, misses = st[11].misses - st[3].misses;
  CHECK(hits > 10 * misses);
}
