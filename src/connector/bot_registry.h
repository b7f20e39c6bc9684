#pragma once

// The running bots (every bot that is not OFFLINE) and each one's live state: its config, its
// status and health counters, the conversations it holds. Private to the connector.

#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/thread_annotations.h"
#include "connector/bot_config.h"
#include "connector/work_tracker.h"
#include "store/store.h"

namespace parley::connector {

// What a finished turn tells about the bot's health.
enum class TurnHealth { kSuccess, kFunctionFailure, kPlatformFailure, kNotCounted };

// A bot that is not OFFLINE. Made by BotControl::activate, shared by the registry, the
// conversations it holds and its turns. Thread-safe: the identity is immutable, the rest is
// guarded by the bot's own mutex.
class BotRuntime {
 public:
  BotRuntime(AccountId account, BotId id, store::User user, std::shared_ptr<const BotConfig> config,
             store::BotStatus status);

  const AccountId account;
  const BotId id;
  const store::User user;  // the bot user (id, pid)

  // Replaced whole (never changed in place), so a turn keeps the one it started with.
  std::shared_ptr<const BotConfig> config() const;
  void setConfig(std::shared_ptr<const BotConfig> config);

  store::BotStatus status() const;
  // The last error code of an invocation the platform could not run.
  std::string lastPlatformError() const;
  void setLastPlatformError(std::string code);

  // A status change made by recordHealth.
  struct Transition {
    store::BotStatus from;
    store::BotStatus to;
  };
  // Applies a finished turn's (or probe's) health to the status (README "Bot health"): the
  // counters of consecutive function and platform failures, VENDOR_INTERRUPTION after
  // `interruptionThreshold` function failures, SERVICE_INTERRUPTION at once when the function is
  // gone and after `interruptionThreshold` platform failures otherwise, ONLINE after a success.
  // Leaving SERVICE_INTERRUPTION cancels the probe timer. Returns the change, if any.
  std::optional<Transition> recordHealth(TurnHealth h, const std::string& platform_error);

  // The SERVICE_INTERRUPTION probe timer: set only while the connector is not stopped (checked
  // under the bot's mutex, so stop() cancelling afterwards sees it). False when not set.
  bool setProbeTimer(std::shared_ptr<boost::asio::steady_timer> timer, const WorkTracker& work);
  void cancelProbe();

  // The open conversations the bot holds (ACTIVE ASSIGNED_AGENT), for the open-conversation
  // limit. hold() returns how many it holds with `conversation`.
  std::size_t hold(const std::string& conversation);
  void release(const std::string& conversation);
  std::size_t held() const;

 private:
  mutable Mutex mu_;
  std::shared_ptr<const BotConfig> config_ PARLEY_GUARDED_BY(mu_);
  store::BotStatus status_ PARLEY_GUARDED_BY(mu_);
  // Consecutive turns that failed because of the function or its response
  // (→ VENDOR_INTERRUPTION).
  int consecutive_failures_ PARLEY_GUARDED_BY(mu_) = 0;
  // Consecutive invocations the platform could not run (→ SERVICE_INTERRUPTION).
  int platform_failures_ PARLEY_GUARDED_BY(mu_) = 0;
  std::string last_platform_error_ PARLEY_GUARDED_BY(mu_);
  std::shared_ptr<boost::asio::steady_timer> probe_timer_ PARLEY_GUARDED_BY(mu_);
  std::unordered_set<std::string> held_ PARLEY_GUARDED_BY(mu_);
};

// Whether an invocation error code means that the platform could not run the function at all
// (spec §4.6: everything that is not a "FaaSLambdaError" — not deployed, deleted, runtime
// unavailable or overloaded, bad input) as opposed to the function's own failure (a
// `com.liveperson.faas.handler.*` code, V2 `com.customer.faas.function.*`, the log limit).
bool platformFailure(std::string_view code);
// Platform failures that say the function is not there: no point waiting for more of them.
bool functionGone(std::string_view code);

// The running bots, by (account, bot) and by (account, bot user). Thread-safe. Lock order: the
// registry's mutex before a bot's.
class BotRegistry {
 public:
  void add(const std::shared_ptr<BotRuntime>& bot);
  // Removes the bot and cancels its probe; nullptr when it is not running.
  std::shared_ptr<BotRuntime> remove(const AccountId& acc, const BotId& id);
  std::shared_ptr<BotRuntime> find(const AccountId& acc, const BotId& id) const;
  std::shared_ptr<BotRuntime> forUser(const AccountId& acc, const std::string& user) const;
  // Whether `bot` is still the running instance of its bot (not stopped, not restarted since).
  bool isActive(const std::shared_ptr<BotRuntime>& bot) const;
  // (bot id, status name) of every running bot, in (account, bot) order.
  std::vector<std::pair<std::string, std::string>> statuses() const;
  void cancelProbes();

 private:
  using Key = std::pair<std::string, std::string>;
  mutable Mutex mu_;
  std::map<Key, std::shared_ptr<BotRuntime>> bots_ PARLEY_GUARDED_BY(mu_);     // (acc, bot)
  std::map<Key, std::shared_ptr<BotRuntime>> by_user_ PARLEY_GUARDED_BY(mu_);  // (acc, user)
};

}  // namespace parley::connector
