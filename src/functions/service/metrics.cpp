#include "functions/service/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace parley::functions::service {

namespace {

double percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest-rank.
  std::size_t rank = static_cast<std::size_t>(std::ceil(p / 100.0 * sorted.size()));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

// Escapes a Prometheus label value.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

void FunctionMetrics::record(const AccountId& account, const FunctionId& function,
                             double duration_ms, const std::string& error_code) {
  MutexLock lock(mu_);
  Series& s = series_[{account.str(), function.str()}];
  ++s.invocations;
  if (!error_code.empty()) ++s.errors_by_code[error_code];
  std::size_t i = 0;
  while (i < kBucketsMs.size() && duration_ms > kBucketsMs[i]) ++i;
  ++s.buckets[i];
  s.sum_ms += duration_ms;
  s.recent.push_back(duration_ms);
  if (s.recent.size() > kReservoirSize) s.recent.pop_front();
}

MetricsSnapshot FunctionMetrics::snapshot(const AccountId& account,
                                          const FunctionId& function) const {
  MetricsSnapshot out;
  std::vector<double> samples;
  {
    MutexLock lock(mu_);
    auto it = series_.find({account.str(), function.str()});
    if (it == series_.end()) return out;
    out.invocations = it->second.invocations;
    out.errors_by_code = it->second.errors_by_code;
    samples.assign(it->second.recent.begin(), it->second.recent.end());
  }
  for (const auto& [code, n] : out.errors_by_code) out.errors += n;
  std::sort(samples.begin(), samples.end());
  out.p50_ms = percentile(samples, 50);
  out.p95_ms = percentile(samples, 95);
  out.p99_ms = percentile(samples, 99);
  return out;
}

void FunctionMetrics::erase(const AccountId& account, const FunctionId& function) {
  MutexLock lock(mu_);
  series_.erase({account.str(), function.str()});
}

std::string FunctionMetrics::prometheusText() const {
  MutexLock lock(mu_);
  std::string out;
  out +=
      "# HELP parley_function_invocations_total Production invocations of a function.\n"
      "# TYPE parley_function_invocations_total counter\n";
  for (const auto& [key, s] : series_)
    out += fmt::format("parley_function_invocations_total{{account=\"{}\",function=\"{}\"}} {}\n",
                       esc(key.first), esc(key.second), s.invocations);
  out +=
      "# HELP parley_function_errors_total Failed production invocations by error code.\n"
      "# TYPE parley_function_errors_total counter\n";
  for (const auto& [key, s] : series_)
    for (const auto& [code, n] : s.errors_by_code)
      out += fmt::format(
          "parley_function_errors_total{{account=\"{}\",function=\"{}\",code=\"{}\"}} {}\n",
          esc(key.first), esc(key.second), esc(code), n);
  out +=
      "# HELP parley_function_duration_seconds Duration of production invocations.\n"
      "# TYPE parley_function_duration_seconds histogram\n";
  for (const auto& [key, s] : series_) {
    std::string labels =
        fmt::format("account=\"{}\",function=\"{}\"", esc(key.first), esc(key.second));
    std::int64_t cumulative = 0;
    for (std::size_t i = 0; i < kBucketsMs.size(); ++i) {
      cumulative += s.buckets[i];
      out += fmt::format("parley_function_duration_seconds_bucket{{{},le=\"{}\"}} {}\n", labels,
                         kBucketsMs[i] / 1000.0, cumulative);
    }
    cumulative += s.buckets.back();
    out += fmt::format("parley_function_duration_seconds_bucket{{{},le=\"+Inf\"}} {}\n", labels,
                       cumulative);
    out +=
        fmt::format("parley_function_duration_seconds_sum{{{}}} {}\n", labels, s.sum_ms / 1000.0);
    out += fmt::format("parley_function_duration_seconds_count{{{}}} {}\n", labels, cumulative);
  }
  return out;
}

}  // namespace parley::functions::service
