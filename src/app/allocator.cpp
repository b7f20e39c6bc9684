#include "app/allocator.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <cstddef>

namespace parley::app {

void enableAllocatorBackgroundPurge() {
  // Looked up at run time: sanitizer builds do not link jemalloc.
  using Mallctl = int (*)(const char*, void*, std::size_t*, void*, std::size_t);
  auto mallctl = reinterpret_cast<Mallctl>(::dlsym(RTLD_DEFAULT, "mallctl"));
  if (!mallctl) return;
  bool on = true;
  if (int rc = mallctl("background_thread", nullptr, nullptr, &on, sizeof(on)); rc != 0)
    spdlog::warn("jemalloc background threads could not be enabled (error {})", rc);
}

}  // namespace parley::app
