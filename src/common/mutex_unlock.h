#pragma once

// MutexUnlock: the reverse of MutexLock (common/thread_annotations.h). A helper that is called
// with a Mutex held and drops it for a while (a leader running a batch outside the lock) is
// PARLEY_REQUIRES(mu_) and drops it for a scope:
//
//   void lead() PARLEY_REQUIRES(mu_) {
//     auto batch = take();
//     {
//       MutexUnlock unlocked(mu_);
//       run(batch);  // mu_ not held here
//     }
//     settle(batch);  // held again
//   }
//
// The scope takes the mutex again when it ends, also when it ends by an exception, so the
// MutexLock further up always releases a held mutex. (clang 16's analysis cannot follow a
// MutexLock passed by reference into a function, so lead(MutexLock&) would not be checked.)

#include "common/thread_annotations.h"

namespace parley {

class PARLEY_SCOPED_CAPABILITY MutexUnlock {
 public:
  explicit MutexUnlock(Mutex& mu) PARLEY_RELEASE(mu) : mu_(mu) { mu_.unlock(); }
  ~MutexUnlock() PARLEY_RELEASE() { mu_.lock(); }
  MutexUnlock(const MutexUnlock&) = delete;
  MutexUnlock& operator=(const MutexUnlock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace parley
