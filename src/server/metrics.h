#pragma once

// Server metrics in Prometheus text format. Thread-safe: counters are atomics, the per-route
// table is guarded by a mutex. Owned by the Server; outlives every session.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"

namespace parley::server {

// Whether /metrics keeps the labels that name a tenant (account, bot, function).
enum class TenantLabels { kSummed, kKept };

// Who may read /metrics, and what it shows.
struct MetricsAccess {
  // The bearer token GET /metrics needs (Authorization: Bearer <token>). Empty: /metrics is off
  // (403 for everyone). Default: empty.
  std::string token;
  // Default: kSummed (series that differ only in tenant labels are summed without them).
  TenantLabels tenant_labels = TenantLabels::kSummed;
};

// Prometheus text without the `account`, `bot` and `function` labels: samples that differ only
// in those are summed into one series (first-seen order kept); comments and samples without
// them pass unchanged. Lines that do not parse as samples pass unchanged.
std::string sumTenantLabels(std::string_view text);

// What kind of connection a socket count is about.
enum class SocketKind { kHttp, kWebSocket };

class Metrics {
 public:
  // Counts one finished HTTP request under a route label (e.g. "rest_v1", "login") and status.
  void countRequest(const std::string& route, int status);
  void socketOpened(SocketKind kind);
  void socketClosed(SocketKind kind);
  void countFrameIn() { frames_in_.fetch_add(1, std::memory_order_relaxed); }
  void countFrameOut() { frames_out_.fetch_add(1, std::memory_order_relaxed); }
  void countSlowConsumerClose() { slow_closes_.fetch_add(1, std::memory_order_relaxed); }
  void countOversizedFrame() { oversized_.fetch_add(1, std::memory_order_relaxed); }
  void countIdleClose() { idle_closes_.fetch_add(1, std::memory_order_relaxed); }
  void countIdlePing() { idle_pings_.fetch_add(1, std::memory_order_relaxed); }
  void countProtocolError() { protocol_errors_.fetch_add(1, std::memory_order_relaxed); }

  // Extra exposition text (already in Prometheus format) appended by text(); e.g. the function
  // service's and the connector's metrics, conversation counts. Add before serving.
  void addSource(std::function<std::string()> source);

  // The whole exposition.
  std::string text() const;

  std::int64_t openWebSockets() const { return ws_open_.load(); }

 private:
  mutable Mutex mu_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::function<std::string()>> sources_ PARLEY_GUARDED_BY(mu_);
  std::atomic<std::int64_t> http_open_{0};
  std::atomic<std::int64_t> ws_open_{0};
  std::atomic<std::int64_t> ws_total_{0};
  std::atomic<std::int64_t> frames_in_{0};
  std::atomic<std::int64_t> frames_out_{0};
  std::atomic<std::int64_t> slow_closes_{0};
  std::atomic<std::int64_t> oversized_{0};
  std::atomic<std::int64_t> idle_closes_{0};
  std::atomic<std::int64_t> idle_pings_{0};
  std::atomic<std::int64_t> protocol_errors_{0};
};

}  // namespace parley::server
