#pragma once

// A counting allocator for the benchmarks: the C allocation functions are replaced by ones that
// forward to glibc's own (__libc_malloc and friends) and keep the bytes in use and their peak.
// Eigen allocates through std::malloc (its aligned_malloc adds the alignment padding on top), and
// operator new goes to malloc too, so every heap byte of the library is seen. Sizes are the
// usable sizes malloc_usable_size reports, so they include the allocator's rounding.
//
// Include this header in exactly one translation unit of a program (each benchmark binary is
// one). It is active only with glibc and without a sanitizer (which brings its own allocator);
// otherwise `available()` is false and the counters stay at 0.

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define UNFOLD_BENCH_COUNTING_ALLOCATOR 1
#include <malloc.h>
#include <cerrno>
#endif

namespace unfold::bench::alloc {

inline std::atomic<std::int64_t> live{0};
inline std::atomic<std::int64_t> high{0};

inline bool available()
{
#ifdef UNFOLD_BENCH_COUNTING_ALLOCATOR
  return true;
#else
  return false;
#endif
}

inline void added(std::int64_t bytes)
{
  const std::int64_t now = live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::int64_t seen = high.load(std::memory_order_relaxed);
  while (now > seen && !high.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
  }
}

inline void removed(std::int64_t bytes) { live.fetch_sub(bytes, std::memory_order_relaxed); }

/// The peak number of heap bytes in use while `f` runs, above those in use when it starts.
template <class F>
std::int64_t peak_extra_bytes(F&& f)
{
  const std::int64_t before = live.load();
  high.store(before);
  f();
  return high.load() - before;
}

}  // namespace unfold::bench::alloc

#ifdef UNFOLD_BENCH_COUNTING_ALLOCATOR
extern "C" {
void* __libc_malloc(std::size_t);
void __libc_free(void*);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* __libc_valloc(std::size_t);
void* __libc_pvalloc(std::size_t);

namespace {
void* counted(void* p)
{
  if (p)
    unfold::bench::alloc::added(std::int64_t(malloc_usable_size(p)));
  return p;
}
void uncounted(void* p)
{
  if (p)
    unfold::bench::alloc::removed(std::int64_t(malloc_usable_size(p)));
}
}  // namespace

void* malloc(std::size_t size) noexcept { return counted(__libc_malloc(size)); }
void free(void* p) noexcept
{
  uncounted(p);
  __libc_free(p);
}
void* calloc(std::size_t count, std::size_t size) noexcept
{
  return counted(__libc_calloc(count, size));
}
void* realloc(void* p, std::size_t size) noexcept
{
  const std::int64_t old = p ? std::int64_t(malloc_usable_size(p)) : 0;
  void* q = __libc_realloc(p, size);
  if (q || size == 0)
    unfold::bench::alloc::removed(old);
  return counted(q);
}
void* memalign(std::size_t alignment, std::size_t size) noexcept
{
  return counted(__libc_memalign(alignment, size));
}
void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept
{
  return counted(__libc_memalign(alignment, size));
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept
{
  void* p = __libc_memalign(alignment, size);
  if (!p)
    return ENOMEM;
  *out = counted(p);
  return 0;
}
void* valloc(std::size_t size) noexcept { return counted(__libc_valloc(size)); }
void* pvalloc(std::size_t size) noexcept { return counted(__libc_pvalloc(size)); }
void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept
{
  if (size != 0 && count > std::size_t(-1) / size) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, count * size);
}
}
#endif
