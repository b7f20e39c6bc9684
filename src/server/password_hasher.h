#pragma once

// Password hashing and verification (argon2id, ~64 MiB and tens of ms of CPU each) off the
// threads that serve everything else: a login flood queues here, bounded, instead of occupying
// the blocking pool that every REST call and socket upgrade needs.
//
// PasswordPool: its own threads (optionally at a lower CPU priority), a bounded queue; a job that
// does not fit is refused at once with Unavailable (the caller answers 503 with Retry-After).
// Thread- safe; `done` runs exactly once, on a pool thread (or on the caller's thread when
// refused), and must not block for long. Owned by the Server; destroying it runs the queued jobs,
// then joins.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace parley::server {

class PasswordHasher {
 public:
  virtual ~PasswordHasher() = default;
  // done(true) when `password` matches `hash`, done(false) when not (or the hash is malformed);
  // done(Unavailable) when the queue is full.
  virtual void verify(std::string hash, std::string password,
                      std::function<void(Result<bool>)> done) = 0;
  // done(hash string), or Unavailable when the queue is full, Internal when libsodium fails.
  virtual void hash(std::string password, crypto::PasswordCost cost,
                    std::function<void(Result<std::string>)> done) = 0;
  // hash() that waits for the result on the calling thread (for blocking REST handlers).
  Result<std::string> hashAndWait(std::string password, crypto::PasswordCost cost);
};

struct PasswordPoolOptions {
  // Threads that hash. Default: 1 (each hash already takes a core and 64 MiB).
  int threads = 1;
  // Jobs waiting for a thread; more are refused. Default: 64.
  std::size_t max_queued = 64;
  // Added to the threads' nice value (> 0: the io and blocking threads win the CPU when both
  // want it). Default: 0.
  int nice = 0;
};

class PasswordPool final : public PasswordHasher {
 public:
  explicit PasswordPool(PasswordPoolOptions options);
  ~PasswordPool() override;
  PasswordPool(const PasswordPool&) = delete;
  PasswordPool& operator=(const PasswordPool&) = delete;

  // PasswordHasher
  void verify(std::string hash, std::string password,
              std::function<void(Result<bool>)> done) override;
  void hash(std::string password, crypto::PasswordCost cost,
            std::function<void(Result<std::string>)> done) override;

  // Jobs waiting now (not counting those running).
  std::size_t queued() const;
  // Jobs refused because the queue was full, since start.
  std::int64_t refused() const;

 private:
  // Queues `job`; false when full.
  bool submit(std::function<void()> job) PARLEY_EXCLUDES(mu_);
  void loop();

  const PasswordPoolOptions opts_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_ PARLEY_GUARDED_BY(mu_);
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::int64_t refused_ PARLEY_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

// Runs every job inline on the caller's thread (tests).
class InlinePasswordHasher final : public PasswordHasher {
 public:
  // PasswordHasher
  void verify(std::string hash, std::string password,
              std::function<void(Result<bool>)> done) override {
    done(crypto::verifyPassword(hash, password));
  }
  void hash(std::string password, crypto::PasswordCost cost,
            std::function<void(Result<std::string>)> done) override {
    done(crypto::hashPassword(password, cost));
  }
};

}  // namespace parley::server
