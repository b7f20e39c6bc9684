#include "connector/metrics.h"

#include <fmt/format.h>

namespace parley::connector {

void ConnectorMetrics::turn(const std::string& bot, const std::string& outcome) {
  MutexLock lock(mu_);
  turns_[{bot, outcome}] += 1;
}

void ConnectorMetrics::escalation(const std::string& bot) {
  MutexLock lock(mu_);
  escalations_[bot] += 1;
}

void ConnectorMetrics::discarded(const std::string& bot) {
  MutexLock lock(mu_);
  discarded_[bot] += 1;
}

void ConnectorMetrics::invoked(const std::string& bot, double ms) {
  MutexLock lock(mu_);
  invoke_ms_sum_[bot] += ms;
  invoke_count_[bot] += 1;
}

void ConnectorMetrics::retry(const std::string& bot) {
  MutexLock lock(mu_);
  retries_[bot] += 1;
}

void ConnectorMetrics::inactivity(const std::string& bot, const std::string& kind) {
  MutexLock lock(mu_);
  inactivity_[{bot, kind}] += 1;
}

void ConnectorMetrics::limitReached(const std::string& bot) {
  MutexLock lock(mu_);
  limit_reached_[bot] += 1;
}

void ConnectorMetrics::hookFailure(const std::string& bot, const std::string& hook) {
  MutexLock lock(mu_);
  hook_failures_[{bot, hook}] += 1;
}

void ConnectorMetrics::turnException(const std::string& bot) {
  MutexLock lock(mu_);
  turn_exceptions_[bot] += 1;
}

void ConnectorMetrics::handedOff(const std::string& bot, std::uint64_t n) {
  MutexLock lock(mu_);
  handed_off_[bot] += n;
}

void ConnectorMetrics::turnRecordFailure() { ++turn_record_failures_; }

void ConnectorMetrics::storeRetry(const std::string& bot) {
  MutexLock lock(mu_);
  store_retries_[bot] += 1;
}

std::string ConnectorMetrics::prometheusText(
    const std::vector<std::pair<std::string, std::string>>& statuses,
    std::size_t conversations) const {
  MutexLock lock(mu_);
  std::string out;
  out +=
      "# HELP parley_bot_turns_total Bot turns by outcome.\n# TYPE parley_bot_turns_total "
      "counter\n";
  for (const auto& [k, v] : turns_)
    out += fmt::format("parley_bot_turns_total{{bot=\"{}\",outcome=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_escalations_total Error escalations.\n# TYPE parley_bot_escalations_total "
      "counter\n";
  for (const auto& [k, v] : escalations_)
    out += fmt::format("parley_bot_escalations_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_discarded_total Responses discarded because the conversation changed "
      "owner.\n# TYPE parley_bot_discarded_total counter\n";
  for (const auto& [k, v] : discarded_)
    out += fmt::format("parley_bot_discarded_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_retries_total Re-invocations after a failed attempt.\n# TYPE "
      "parley_bot_retries_total counter\n";
  for (const auto& [k, v] : retries_)
    out += fmt::format("parley_bot_retries_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_invoke_ms Function invocation wall time.\n# TYPE parley_bot_invoke_ms "
      "summary\n";
  for (const auto& [k, v] : invoke_ms_sum_) {
    out += fmt::format("parley_bot_invoke_ms_sum{{bot=\"{}\"}} {:.3f}\n", k, v);
    out += fmt::format("parley_bot_invoke_ms_count{{bot=\"{}\"}} {}\n", k,
                       invoke_count_.count(k) ? invoke_count_.at(k) : 0);
  }
  out +=
      "# HELP parley_bot_hook_failures_total Failed pre/post/error hook invocations.\n# TYPE "
      "parley_bot_hook_failures_total counter\n";
  for (const auto& [k, v] : hook_failures_)
    out += fmt::format("parley_bot_hook_failures_total{{bot=\"{}\",hook=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_inactivity_total Chat inactivity warnings and closes.\n# TYPE "
      "parley_bot_inactivity_total counter\n";
  for (const auto& [k, v] : inactivity_)
    out += fmt::format("parley_bot_inactivity_total{{bot=\"{}\",kind=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_conversation_limit_total Conversations escalated because the bot held "
      "its open-conversation limit.\n# TYPE parley_bot_conversation_limit_total counter\n";
  for (const auto& [k, v] : limit_reached_)
    out += fmt::format("parley_bot_conversation_limit_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_turn_exceptions_total Exceptions caught by a conversation's fence (the "
      "turn they interrupted is escalated or recorded as ERROR).\n# TYPE "
      "parley_bot_turn_exceptions_total counter\n";
  for (const auto& [k, v] : turn_exceptions_)
    out += fmt::format("parley_bot_turn_exceptions_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_handed_off_total Open conversations handed on because their bot was "
      "stopped or deleted.\n# TYPE parley_bot_handed_off_total counter\n";
  for (const auto& [k, v] : handed_off_)
    out += fmt::format("parley_bot_handed_off_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_store_retries_total Turn writes tried again after the store refused "
      "them as unavailable.\n# TYPE parley_bot_store_retries_total counter\n";
  for (const auto& [k, v] : store_retries_)
    out += fmt::format("parley_bot_store_retries_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_turn_record_failures_total Turn records the store failed to write.\n"
      "# TYPE parley_bot_turn_record_failures_total counter\n";
  out += fmt::format("parley_bot_turn_record_failures_total {}\n", turn_record_failures_.load());
  out +=
      "# HELP parley_bot_status Running bots by status (1 = current).\n# TYPE parley_bot_status "
      "gauge\n";
  for (const auto& [bot, status] : statuses)
    out += fmt::format("parley_bot_status{{bot=\"{}\",status=\"{}\"}} 1\n", bot, status);
  out +=
      "# HELP parley_bot_conversations Conversations tracked by the connector.\n# TYPE "
      "parley_bot_conversations gauge\n";
  out += fmt::format("parley_bot_conversations {}\n", conversations);
  return out;
}

}  // namespace parley::connector
