#pragma once

// The readers/writer and the re-entrant lock as capabilities for clang's thread-safety analysis,
// next to parley::Mutex (common/thread_annotations.h; no effect with g++):
//
//   mutable SharedMutex mu_;
//   Table table_ PARLEY_GUARDED_BY(mu_);
//   Row find(Key k) const PARLEY_EXCLUDES(mu_) { ReaderMutexLock lock(mu_); ... }  // shared
//   void put(Row r) PARLEY_EXCLUDES(mu_) { WriterMutexLock lock(mu_); ... }       // exclusive
//
// A shared holder may read what the mutex guards; writing needs it exclusively. A lock a thread
// may take again while holding it (a bus handler that publishes on the bus that called it) is a
// RecursiveMutex held by RecursiveMutexLock; the analysis checks it like a Mutex (a second lock
// in the same function is still reported). Neither has a condition-variable wait.

#include <mutex>
#include <shared_mutex>

#include "common/thread_annotations.h"

// The caller must hold the capabilities at least shared / the function takes or drops them
// shared.
#define PARLEY_REQUIRES_SHARED(...) \
  PARLEY_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define PARLEY_ACQUIRE_SHARED(...) PARLEY_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define PARLEY_RELEASE_SHARED(...) PARLEY_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))

namespace parley {

// std::recursive_mutex as a capability. Lock it with RecursiveMutexLock.
class PARLEY_CAPABILITY("mutex") RecursiveMutex {
 public:
  RecursiveMutex() = default;
  RecursiveMutex(const RecursiveMutex&) = delete;
  RecursiveMutex& operator=(const RecursiveMutex&) = delete;

  void lock() PARLEY_ACQUIRE() { mu_.lock(); }
  void unlock() PARLEY_RELEASE() { mu_.unlock(); }

 private:
  std::recursive_mutex mu_;
};

// Holds a RecursiveMutex for its scope.
class PARLEY_SCOPED_CAPABILITY RecursiveMutexLock {
 public:
  explicit RecursiveMutexLock(RecursiveMutex& mu) PARLEY_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~RecursiveMutexLock() PARLEY_RELEASE() { mu_.unlock(); }
  RecursiveMutexLock(const RecursiveMutexLock&) = delete;
  RecursiveMutexLock& operator=(const RecursiveMutexLock&) = delete;

 private:
  RecursiveMutex& mu_;
};

// std::shared_mutex as a capability: readers hold it with ReaderMutexLock (shared; they may
// read what it guards), writers with WriterMutexLock (exclusive).
class PARLEY_CAPABILITY("mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() PARLEY_ACQUIRE() { mu_.lock(); }
  void unlock() PARLEY_RELEASE() { mu_.unlock(); }
  void lock_shared() PARLEY_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() PARLEY_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class PARLEY_SCOPED_CAPABILITY ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex& mu) PARLEY_ACQUIRE_SHARED(mu) : mu_(mu) {
    mu_.lock_shared();
  }
  ~ReaderMutexLock() PARLEY_RELEASE() { mu_.unlock_shared(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex& mu_;
};

class PARLEY_SCOPED_CAPABILITY WriterMutexLock {
 public:
  explicit WriterMutexLock(SharedMutex& mu) PARLEY_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterMutexLock() PARLEY_RELEASE() { mu_.unlock(); }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace parley
