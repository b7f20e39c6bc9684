#pragma once

// Invocation metrics of production (connector) invocations per function: counts, errors by
// LivePerson error code and the duration distribution. Durations go into fixed Prometheus
// histogram buckets (exported) and a bounded reservoir of the most recent 1024 samples (for
// p50/p95/p99 in GET /functions/{uuid}). Thread-safe; memory is bounded per function.

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "common/ids.h"
#include "common/thread_annotations.h"

namespace parley::functions::service {

struct MetricsSnapshot {
  std::int64_t invocations = 0;
  std::int64_t errors = 0;
  std::map<std::string, std::int64_t> errors_by_code;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
};

class FunctionMetrics final {
 public:
  // Upper bounds of the duration buckets in milliseconds (+Inf is implied).
  static constexpr std::array<double, 15> kBucketsMs = {
      1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
  static constexpr std::size_t kReservoirSize = 1024;

  // Records one invocation. `error_code` is empty on success.
  void record(const AccountId& account, const FunctionId& function, double duration_ms,
              const std::string& error_code);
  // Zeros when the function was never invoked.
  MetricsSnapshot snapshot(const AccountId& account, const FunctionId& function) const;
  // Drops a deleted function's series.
  void erase(const AccountId& account, const FunctionId& function);
  // Prometheus text exposition (version 0.0.4) of every function's series:
  // parley_function_invocations_total, parley_function_errors_total{code},
  // parley_function_duration_seconds (histogram).
  std::string prometheusText() const;

 private:
  struct Series {
    std::int64_t invocations = 0;
    std::map<std::string, std::int64_t> errors_by_code;
    std::array<std::int64_t, kBucketsMs.size() + 1> buckets{};  // last = +Inf
    double sum_ms = 0;
    std::deque<double> recent;  // at most kReservoirSize, newest at the back
  };
  using Key = std::pair<std::string, std::string>;  // account, function

  mutable Mutex mu_;
  std::map<Key, Series> series_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::functions::service
