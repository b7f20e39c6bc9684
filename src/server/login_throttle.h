#pragma once

// Login throttling per user (account + login name) and per client address: a few free failures,
// then an exponential backoff between attempts, then a lockout window. An attempt that is
// throttled is refused before any store read or password hash, so a flood of guesses costs
// almost nothing. Successful logins reset the user's counter (not the address's: an attacker
// with one valid login must not be able to wipe its address's record).
//
// An admitted attempt counts as in flight until it is settled (failed, succeeded or cancelled)
// and is counted as a possible failure: at most `free_failures` attempts per key run at once,
// and past the free failures only one, so concurrent guesses cannot slip past the backoff. Memory
// is bounded: at most `max_entries` keys per kind, the least recently failed (or already forgotten)
// ones dropped first.
//
// Across a cluster (`LoginThrottleOptions::peers`, common/limit_peers.h): every failure and
// success is sent to the other nodes, and theirs are counted here like local ones, so the free
// failures, backoffs and lockouts hold for a user or an address whichever nodes its attempts go
// to. Attempts in flight are counted per node.
//
// Thread-safe (one mutex). Owned by Auth.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>

#include "common/clock.h"
#include "common/limit_peers.h"
#include "common/thread_annotations.h"

namespace parley::server {

// The policy for one kind of key. Numbers are documented in the README's Limits table.
struct ThrottlePolicy {
  // Consecutive failures that cost nothing. Default: set per kind (see LoginThrottleOptions).
  int free_failures = 5;
  // After the free failures: wait this long before the next attempt, doubling with every further
  // failure, up to max_backoff.
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{60'000};
  // At this many consecutive failures the key is locked for `lockout`.
  int lockout_failures = 10;
  std::chrono::milliseconds lockout{15 * 60'000};
  // Failures older than this (since the last one) are forgotten.
  std::chrono::milliseconds forget_after{15 * 60'000};
};

struct LoginThrottleOptions {
  // Per account + login name (case-insensitive). Default: 5 free failures, 1 s doubling up to
  // 60 s, locked for 15 min at 10 failures.
  ThrottlePolicy user{
      5,  std::chrono::milliseconds(1000),        std::chrono::milliseconds(60'000),
      10, std::chrono::milliseconds(15 * 60'000), std::chrono::milliseconds(15 * 60'000)};
  // Per client address. Default: 20 free failures, 1 s doubling up to 60 s, locked for 15 min
  // at 40 failures.
  ThrottlePolicy address{
      20, std::chrono::milliseconds(1000),        std::chrono::milliseconds(60'000),
      40, std::chrono::milliseconds(15 * 60'000), std::chrono::milliseconds(15 * 60'000)};
  // Most keys remembered per kind. Default: 100,000.
  std::size_t max_entries = 100'000;
  // The other nodes of a cluster, and this throttle's name among them ("login", "oauth"); a
  // throttle's events go only to throttles of the same name. Default: none (one node).
  std::shared_ptr<LimitPeers> peers;
  std::string peer_name = "login";
};

class LoginThrottle {
 public:
  // An attempt that was let through; settle it exactly once.
  struct Admission {
    std::string user_key;
    std::string address;
  };
  // An attempt that was refused: when to retry, and why (user or address).
  struct Denial {
    std::chrono::milliseconds retry_after{0};
    std::string message;
  };

  // `clock` must outlive the throttle. With `options.peers`, attaches to them as
  // `options.peer_name` (until destroyed).
  LoginThrottle(const Clock& clock, LoginThrottleOptions options);
  ~LoginThrottle();
  LoginThrottle(const LoginThrottle&) = delete;
  LoginThrottle& operator=(const LoginThrottle&) = delete;

  // Lets the attempt through (then settle it) or refuses it. `address` may be empty (unknown).
  std::variant<Admission, Denial> admit(const std::string& account, const std::string& login_name,
                                        const std::string& address);
  // The password was wrong (or the user unknown): counts a failure for both keys.
  void failed(const Admission& a);
  // The password was right: resets the user's record; the address keeps its failures.
  void succeeded(const Admission& a);
  // The attempt was not decided (e.g. the hashing queue was full): counts nothing.
  void cancelled(const Admission& a);

  // Keys currently remembered (users + addresses). For tests and metrics.
  std::size_t sizeForTest() const;
  // Another node's events counted here (tests and metrics).
  std::uint64_t peerEvents() const;

 private:
  struct Entry {
    int failures = 0;
    int in_flight = 0;
    TimeMs last_failure = 0;
    TimeMs blocked_until = 0;
  };
  using Table = std::unordered_map<std::string, Entry>;

  // Why `e` refuses an attempt at `now`, or nullopt. Forgets old failures first.
  std::optional<std::chrono::milliseconds> refusal(Entry& e, const ThrottlePolicy& p, TimeMs now);
  void recordFailure(Entry& e, const ThrottlePolicy& p, TimeMs now);
  // Makes room for one more key in `t` (one of the tables).
  void trim(Table& t, const ThrottlePolicy& p, TimeMs now) PARLEY_REQUIRES(mu_);
  static void release(Table& t, const std::string& key);
  // A successful login: the user's failures are forgotten.
  void resetUser(const std::string& user_key) PARLEY_REQUIRES(mu_);
  // Another node's event (the JSON failed() and succeeded() publish); malformed ones are dropped.
  void receive(std::string_view event);
  void publish(const char* what, const Admission& a);

  const Clock& clock_;
  const LoginThrottleOptions opts_;
  mutable Mutex mu_;
  Table users_ PARLEY_GUARDED_BY(mu_);
  Table addresses_ PARLEY_GUARDED_BY(mu_);
  std::uint64_t peer_events_ PARLEY_GUARDED_BY(mu_) = 0;
};

}  // namespace parley::server
