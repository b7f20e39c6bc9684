#pragma once

#include <cstdio>
#include <cstdlib>

// PARLEY_CHECK(cond, msg): always on; aborts with context when an invariant is broken.
// Never use it on untrusted input: that is an expected failure and returns an Error.
#define PARLEY_CHECK(cond, msg)                                                                \
  do {                                                                                         \
    if (!(cond)) [[unlikely]] {                                                                \
      std::fprintf(stderr, "CHECK failed at %s:%d: %s: %s\n", __FILE__, __LINE__, #cond, msg); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

#ifdef NDEBUG
#define PARLEY_DCHECK(cond, msg) ((void)0)
#else
#define PARLEY_DCHECK(cond, msg) PARLEY_CHECK(cond, msg)
#endif
