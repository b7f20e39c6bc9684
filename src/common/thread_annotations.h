#pragma once

// Clang thread-safety analysis (-Wthread-safety; the thread-safety preset builds with it and
// -Werror): the annotation macros, and a mutex and a lock the analysis understands. With g++ (the
// product's compiler) the macros expand to nothing and the types cost what std::mutex and
// std::unique_lock cost.
//
// libstdc++'s std::mutex and std::lock_guard carry no capability attributes, so members guarded
// by a std::mutex cannot be checked. Annotated code uses parley::Mutex and parley::MutexLock:
//
//   mutable Mutex mu_;
//   std::map<Key, Value> items_ PARLEY_GUARDED_BY(mu_);
//   void addLocked(Value v) PARLEY_REQUIRES(mu_);   // the caller holds mu_
//   void add(Value v) PARLEY_EXCLUDES(mu_);         // takes mu_ itself
//   ...
//   MutexLock lock(mu_);
//   while (items_.empty()) lock.wait(cv_);           // std::condition_variable
//
// The analysis checks a lambda's body on its own, as if no lock were held: a lambda run under
// the lock that reads guarded members is annotated like a helper,
//   std::erase_if(order_, [&](const Key& k) PARLEY_REQUIRES(mu_) { return !items_.contains(k); });
// and waits take no predicate (the condition is a loop in the locked scope, where it is checked).
// PARLEY_NO_THREAD_SAFETY_ANALYSIS is for a function whose locking the analysis cannot follow,
// with the reason next to it.
//
// Annotated: src/ (not the tests) except the functions' gateway.cpp (comments there).
// SharedMutex and RecursiveMutex (readers/writer, re-entrant) are in common/shared_mutex.h.
// A held Mutex is dropped for a scope in a PARLEY_REQUIRES helper by MutexUnlock (mutex_unlock.h).

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define PARLEY_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PARLEY_THREAD_ANNOTATION(x)
#endif

// A type that is a lock (a capability named `x`, e.g. "mutex").
#define PARLEY_CAPABILITY(x) PARLEY_THREAD_ANNOTATION(capability(x))
// An RAII type that holds a capability for its lifetime.
#define PARLEY_SCOPED_CAPABILITY PARLEY_THREAD_ANNOTATION(scoped_lockable)
// A member that may be read or written only while holding `x`.
#define PARLEY_GUARDED_BY(x) PARLEY_THREAD_ANNOTATION(guarded_by(x))
// A pointer member whose pointee may be used only while holding `x`.
#define PARLEY_PT_GUARDED_BY(x) PARLEY_THREAD_ANNOTATION(pt_guarded_by(x))
// The caller must hold the capabilities (exclusively).
#define PARLEY_REQUIRES(...) PARLEY_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The caller must not hold the capabilities (the function takes them itself).
#define PARLEY_EXCLUDES(...) PARLEY_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// The function acquires / releases the capabilities (none given: `this`).
#define PARLEY_ACQUIRE(...) PARLEY_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define PARLEY_RELEASE(...) PARLEY_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define PARLEY_TRY_ACQUIRE(...) PARLEY_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The function returns a reference to the capability `x`.
#define PARLEY_RETURN_CAPABILITY(x) PARLEY_THREAD_ANNOTATION(lock_returned(x))
// Turns the analysis off for one function (say why next to it).
#define PARLEY_NO_THREAD_SAFETY_ANALYSIS PARLEY_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace parley {

// std::mutex as a capability. Lock it with MutexLock; lock()/unlock() are there for the rare
// hand-over-hand case and are checked too.
class PARLEY_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() PARLEY_ACQUIRE() { mu_.lock(); }
  void unlock() PARLEY_RELEASE() { mu_.unlock(); }
  // Takes the mutex only if no one holds it; true when taken (then unlock() it).
  bool try_lock() PARLEY_TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope (a std::unique_lock underneath, so it can wait on a
// std::condition_variable). unlock()/lock() drop and retake it inside the scope; the analysis
// follows both.
class PARLEY_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) PARLEY_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() PARLEY_RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() PARLEY_RELEASE() { lock_.unlock(); }
  void lock() PARLEY_ACQUIRE() { lock_.lock(); }

  // Blocks until notified (or spuriously woken); the mutex is released while blocked and held
  // again on return. Callers loop on their condition.
  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  template <class Rep, class Period>
  std::cv_status waitFor(std::condition_variable& cv, const std::chrono::duration<Rep, Period>& d) {
    return cv.wait_for(lock_, d);
  }
  template <class Clock, class Duration>
  std::cv_status waitUntil(std::condition_variable& cv,
                           const std::chrono::time_point<Clock, Duration>& t) {
    return cv.wait_until(lock_, t);
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace parley
