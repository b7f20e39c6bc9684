#pragma once

namespace parley::app {

// With jemalloc (the `parley` binary's allocator outside sanitizer builds): turns on its
// background threads, which return freed memory to the OS after its decay time (10 s) even while
// the server is idle. Without them freed pages are only returned when later allocations happen,
// so memory that anonymous peers made the server allocate (frames, profiles) stayed resident
// after they left. Does nothing when jemalloc is not the allocator. Call once, early in `serve`
// (not in worker processes).
void enableAllocatorBackgroundPurge();

}  // namespace parley::app
