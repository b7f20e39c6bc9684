#pragma once

// The connector's counters (the parley_bot_* Prometheus families). Thread-safe; private to the
// connector.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"

namespace parley::connector {

class ConnectorMetrics {
 public:
  void turn(const std::string& bot, const std::string& outcome);
  void escalation(const std::string& bot);
  void discarded(const std::string& bot);
  void invoked(const std::string& bot, double ms);
  void retry(const std::string& bot);
  // `kind`: "warning" or "close".
  void inactivity(const std::string& bot, const std::string& kind);
  void limitReached(const std::string& bot);
  // `hook`: PRE_HOOK, POST_HOOK or ERROR_HOOK.
  void hookFailure(const std::string& bot, const std::string& hook);
  // An exception caught by a conversation strand's fence (a bug, or a throwing dependency).
  void turnException(const std::string& bot);
  // Open conversations handed on when their bot was stopped.
  void handedOff(const std::string& bot, std::uint64_t n);
  // A turn record whose asynchronous write failed.
  void turnRecordFailure();
  // A turn's write (an effect, the read looking for it, its done mark) tried again after the
  // store refused it as unavailable.
  void storeRetry(const std::string& bot);

  // Prometheus text: the counters, then the gauges of the running bots' statuses ((bot id,
  // status) pairs) and of the conversations the connector tracks.
  std::string prometheusText(const std::vector<std::pair<std::string, std::string>>& statuses,
                             std::size_t conversations) const;

 private:
  using Pair = std::pair<std::string, std::string>;
  mutable Mutex mu_;
  std::map<Pair, std::uint64_t> turns_ PARLEY_GUARDED_BY(mu_);  // (bot, outcome)
  std::map<std::string, std::uint64_t> escalations_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> discarded_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, double> invoke_ms_sum_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> invoke_count_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> retries_ PARLEY_GUARDED_BY(mu_);
  std::map<Pair, std::uint64_t> inactivity_ PARLEY_GUARDED_BY(mu_);  // (bot, warning|close)
  std::map<std::string, std::uint64_t> limit_reached_ PARLEY_GUARDED_BY(mu_);
  std::map<Pair, std::uint64_t> hook_failures_ PARLEY_GUARDED_BY(mu_);  // (bot, hook)
  std::map<std::string, std::uint64_t> turn_exceptions_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> handed_off_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::uint64_t> store_retries_ PARLEY_GUARDED_BY(mu_);
  std::atomic<std::uint64_t> turn_record_failures_{0};
};

}  // namespace parley::connector
