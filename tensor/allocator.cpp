#include "tensor/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "tensor/error.h"

// AddressSanitizer watches malloc, not mmap: in a sanitizer build every block comes from malloc, so that an
// overflow or a leaked tensor is still reported.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define QKVLAB_NO_BLOCK_POOL 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QKVLAB_NO_BLOCK_POOL 1
#endif
#if defined(__linux__) && !defined(QKVLAB_NO_BLOCK_POOL)
#include <sys/mman.h>
#define QKVLAB_BLOCK_POOL 1
#else
#define QKVLAB_BLOCK_POOL 0
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace qkvlab {

namespace {
constexpr size_t kBig = size_t{1} << 20;   // from here on, blocks come from the pool
constexpr size_t kHuge = size_t{2} << 20;  // a transparent huge page
constexpr size_t kPage = 4096;

size_t small_size(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }

void* small_alloc(size_t bytes) {
  void* p = std::aligned_alloc(64, small_size(bytes));
  if (!p) fail("out of memory: could not allocate ", bytes, " bytes");
  return p;
}

#if QKVLAB_BLOCK_POOL
// Blocks up to 4 KiB, once freed, wait in a cache of the thread that freed them, by size (64-byte steps), for
// the next request of that size on that thread. Decoding a token with the KV cache makes and frees a few hundred
// small arrays (rows of 65 to 512 values), and glibc's aligned_alloc (a memalign that also consolidates malloc's
// fast bins before every request over 1 KiB) took 7 % of it. At most 2 MiB wait per thread; a block beyond that
// goes back to malloc. Caching blocks up to 64 KiB decoded no faster, and made a training run hold 7 MB more:
// blocks held back by size leave holes in malloc's heap that other sizes cannot use.
constexpr size_t kCachedMax = size_t{4} << 10;
constexpr size_t kCachedBytes = size_t{2} << 20;

struct SmallCache {
  std::vector<void*> free[kCachedMax / 64];  // free[i]: blocks of (i + 1) * 64 bytes
  size_t bytes = 0;
  void clear() {  // every cached block back to malloc
    for (auto& list : free) {
      for (void* p : list) std::free(p);
      list.clear();
    }
    bytes = 0;
  }
  ~SmallCache() { clear(); }
};
// The cache lives on the heap behind a plain pointer that the thread's exit clears (`Owner`), so a block freed
// after that (a static Array destroyed late) finds no cache and goes straight to free().
thread_local SmallCache* t_cache = nullptr;
struct Owner {
  bool made = false;
  ~Owner() {
    delete t_cache;
    t_cache = nullptr;
  }
};
thread_local Owner t_owner;

SmallCache* small_cache() {
  if (!t_cache && !t_owner.made) {
    t_owner.made = true;  // once: after the thread's exit has cleared it, no new cache
    t_cache = new SmallCache;
  }
  return t_cache;
}
#endif

#if QKVLAB_BLOCK_POOL
#if defined(__GLIBC__)
// Everything else stays in malloc's heap: without this glibc maps every block over 128 KiB afresh and unmaps it
// on free, and each op that makes a 200 KiB output (or a std::vector of a few MB) pays its page faults again.
const bool g_malloc_tuned = [] {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  return true;
}();
#endif

// The size a request occupies in the pool. Blocks of 8 MiB and more are whole huge pages (under 2 MiB wasted on
// a block of 8 or more, nothing for the activations of the GPT presets, whose sizes are multiples of 2 MiB).
size_t pool_size(size_t bytes) {
  if (bytes >= 4 * kHuge) return (bytes + kHuge - 1) / kHuge * kHuge;
  return (bytes + kPage - 1) / kPage * kPage;
}

void* map_block(size_t size) {
  const bool huge = size >= kHuge;
  const size_t len = huge ? size + kHuge : size;  // room to cut out a 2 MiB aligned start
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  if (!huge) return m;
  const uintptr_t start = reinterpret_cast<uintptr_t>(m);
  const uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  if (aligned > start) munmap(m, aligned - start);                      // the unaligned head
  const uintptr_t end = aligned + size;
  if (start + len > end) munmap(reinterpret_cast<void*>(end), start + len - end);  // and the tail
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE  // Linux only (macOS has no transparent huge pages): elsewhere the block stays in small pages
  madvise(p, size / kHuge * kHuge, MADV_HUGEPAGE);  // a hint: failure only costs speed
#endif
  return p;
}

// The most the pool maps: the high-water mark of live bytes, and an eighth more (at most 16 MiB). Under the mark
// alone, a step whose phases need different mixes of sizes (`small`: forward's 8 MiB hidden activations, then
// backward's 2 MiB gradients) unmapped 11 blocks a step to map them again, ~550 page faults and 5 % of a step at
// 1 thread; with the slack every request after the first step is a hit (`small`: 114 MB mapped instead of 100).
int64_t pool_bound(int64_t high_water) { return high_water + std::min<int64_t>(high_water / 8, int64_t{16} << 20); }

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> cached;  // pool size -> a free block of that size
  AllocatorStats st;
  int64_t live = 0;                     // big-block bytes in use

  void unmap(std::multimap<size_t, void*>::iterator it) {
    munmap(it->second, it->first);
    st.mapped_bytes -= int64_t(it->first);
    st.cached_bytes -= int64_t(it->first);
    st.unmapped++;
    cached.erase(it);
  }
  // Unmap cached blocks until `size` more bytes fit under the bound (pool_bound): the smallest block that makes
  // enough room on its own, else the largest, again.
  void make_room(size_t size) {
    const int64_t bound = pool_bound(st.high_water);
    while (!cached.empty() && st.mapped_bytes + int64_t(size) > bound) {
      const size_t need = size_t(st.mapped_bytes + int64_t(size) - bound);
      auto it = cached.lower_bound(need);
      unmap(it != cached.end() ? it : std::prev(cached.end()));
    }
  }
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: static Arrays may be freed after this file's statics
  return *p;
}
#endif
}  // namespace

void* allocate_block(size_t bytes) {
#if QKVLAB_BLOCK_POOL
  if (bytes >= kBig) {
    const size_t size = pool_size(bytes);
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    auto hit = P.cached.find(size);
    if (hit != P.cached.end()) {
      void* p = hit->second;
      P.cached.erase(hit);
      P.st.cached_bytes -= int64_t(size);
      P.st.hits++;
      P.live += int64_t(size);
      return p;
    }
    const int64_t previous_high = P.st.high_water;
    P.st.high_water = std::max(P.st.high_water, P.live + int64_t(size));
    P.make_room(size);
    void* p = map_block(size);
    if (!p) {  // the kernel said no: give back everything cached and try once more
      while (!P.cached.empty()) P.unmap(P.cached.begin());
      p = map_block(size);
      if (!p) {
        P.st.high_water = previous_high;  // the block never lived: the bound stays where it was
        fail("out of memory: could not allocate ", bytes, " bytes");
      }
    }
    P.st.mapped_bytes += int64_t(size);
    P.st.misses++;
    P.live += int64_t(size);
    return p;
  }
  if (bytes <= kCachedMax) {
    if (SmallCache* c = small_cache()) {
      const size_t size = small_size(bytes);
      std::vector<void*>& list = c->free[size / 64 - 1];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        c->bytes -= size;
        return p;
      }
    }
  }
#endif
  return small_alloc(bytes);
}

void free_block(void* p, size_t bytes) noexcept {
  if (!p) return;
#if QKVLAB_BLOCK_POOL
  if (bytes >= kBig) {
    const size_t size = pool_size(bytes);
    Pool& P = pool();
    std::lock_guard<std::mutex> lock(P.mu);
    P.live -= int64_t(size);
    P.cached.emplace(size, p);
    P.st.cached_bytes += int64_t(size);
    return;
  }
  if (bytes <= kCachedMax) {
    const size_t size = small_size(bytes);
    if (SmallCache* c = t_cache; c && c->bytes + size <= kCachedBytes) {
      try {
        c->free[size / 64 - 1].push_back(p);
        c->bytes += size;
        return;
      } catch (const std::bad_alloc&) {  // no room for the list: free the block below instead
      }
    }
  }
#endif
  std::free(p);
}

bool block_pool_enabled() { return QKVLAB_BLOCK_POOL; }

AllocatorStats allocator_stats() {
#if QKVLAB_BLOCK_POOL
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  AllocatorStats st = P.st;
  st.bound = pool_bound(st.high_water);
  return st;
#else
  return {};
#endif
}

void release_cached_blocks() {
#if QKVLAB_BLOCK_POOL
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  while (!P.cached.empty()) P.unmap(P.cached.begin());
  P.st.high_water = P.live;  // the bound restarts from what is in use now
  if (SmallCache* c = t_cache) c->clear();  // and this thread's small blocks go back to malloc
#endif
}

}  // namespace qkvlab
