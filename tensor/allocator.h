// Where tensor memory comes from. Storage (tensor/array.h) asks here for every block.
//
// Small blocks (< 1 MiB) come from malloc; those up to 4 KiB, once freed, wait in a per-thread cache by size
// (at most 2 MiB a thread) for the next request of the same size: decoding one token makes and frees a few hundred
// of them, and malloc's aligned allocation was 7 % of its time. Big ones -- activations, gradients, weight matrices -- come from a
// pool of pages mapped here, because a training step frees and re-allocates the same few big sizes hundreds of
// times, and each way malloc offers is bad for one of the two things we measure:
//   - returned to the kernel on free (glibc's default above 128 KiB): every step pays the page faults again,
//     a fault per 4 KiB page on first touch, 2-3x slower steps;
//   - kept in malloc's heap: no faults, but the heap fragments, and peak RSS of a `small` GPT step was 2.8x the
//     bytes of tensors ever alive at once (525 MB against 188 MB).
// The pool keeps freed blocks by size and hands one back for a request of exactly that size (a training step
// asks for the same sizes every step, so every request after the first step is a hit). It never maps more
// than the most bytes ever live at once (the high-water mark of live big blocks) and an eighth (at most 16 MiB):
// when a request misses, cached blocks of other sizes are unmapped first, until the new block fits under that
// bound. So peak RSS ~= peak live tensor bytes + 12 %, and memory cannot grow from step to step when the live
// bytes do not. (The eighth: the phases of a step need different mixes of sizes; under the mark alone they
// unmapped and mapped 11 blocks a step of `small` again, 5 % of its time.)
// Blocks of 2 MiB and more are aligned to 2 MiB and marked for transparent huge pages (a fault per 2 MiB
// instead of per 4 KiB when they are first touched).
#pragma once
#include <cstddef>
#include <cstdint>

namespace qkvlab {

void* allocate_block(size_t bytes);            // 64-byte aligned; throws qkvlab::Error when out of memory
void free_block(void* p, size_t bytes) noexcept;  // bytes: the same value given to allocate_block

struct AllocatorStats {
  int64_t mapped_bytes = 0;   // pages held by the big-block pool, in use or cached
  int64_t cached_bytes = 0;   // of those, free and waiting for reuse
  int64_t high_water = 0;     // the most big-block bytes live at once
  int64_t bound = 0;          // the most mapped_bytes may reach: high_water + min(high_water / 8, 16 MiB)
  int64_t hits = 0, misses = 0, unmapped = 0;  // requests served from the cache, newly mapped; blocks unmapped
};
AllocatorStats allocator_stats();
bool block_pool_enabled();     // false off Linux and under AddressSanitizer: then every block comes from malloc
// Unmap every cached big block (the high-water bound restarts from the bytes in use) and free this thread's
// cached small blocks.
void release_cached_blocks();

}  // namespace qkvlab
