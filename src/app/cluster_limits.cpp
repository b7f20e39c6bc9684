#include "app/cluster_limits.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

namespace parley::app {
namespace {

constexpr std::string_view kPrefix = "parley-limits.";

}  // namespace

ClusterLimits::ClusterLimits(bus::Bus& bus, std::string node) : bus_(bus), node_(std::move(node)) {}

ClusterLimits::~ClusterLimits() { stop(); }

Status ClusterLimits::start() {
  auto heard =
      bus_.listen(std::string(kPrefix) + ">", [this](const bus::BusMessage& m) { receive(m); });
  if (!heard) return std::unexpected(heard.error());
  listening_ = std::move(*heard);
  return {};
}

void ClusterLimits::stop() {
  {
    WriterMutexLock lock(send_mu_);
    stopped_ = true;
  }
  // Destroying the subscription waits for a delivery in progress.
  listening_.reset();
}

void ClusterLimits::publish(std::string_view name, std::string event) {
  const std::string data =
      boost::json::serialize(boost::json::object{{"origin", node_}, {"event", event}});
  ReaderMutexLock sending(send_mu_);
  if (stopped_) return;
  // Not under mu_: the in-process bus delivers on this thread.
  if (auto st = bus_.broadcast(std::string(kPrefix) + bus::subjectToken(name), data); !st) {
    MutexLock lock(mu_);
    if (failed_sends_++ == 0)
      spdlog::warn("cluster limits: cannot tell the other nodes ({}); counting here only",
                   st.error().message);
  }
}

void ClusterLimits::receive(const bus::BusMessage& m) {
  if (!m.subject.starts_with(kPrefix)) return;
  const std::string_view name = std::string_view(m.subject).substr(kPrefix.size());
  boost::system::error_code ec;
  auto v = boost::json::parse(m.data, ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (!o) return;
  const auto* origin = o->if_contains("origin");
  const auto* event = o->if_contains("event");
  if (!origin || !origin->is_string() || !event || !event->is_string()) return;
  if (origin->as_string() == node_) return;  // our own, heard back
  MutexLock lock(mu_);
  auto it = receivers_.find(name);
  if (it == receivers_.end()) return;
  ++received_;
  it->second(std::string_view(event->as_string()));
}

void ClusterLimits::attach(const std::string& name, Receiver receiver) {
  MutexLock lock(mu_);
  receivers_[bus::subjectToken(name)] = std::move(receiver);
}

void ClusterLimits::detach(const std::string& name) {
  MutexLock lock(mu_);
  receivers_.erase(bus::subjectToken(name));
}

std::uint64_t ClusterLimits::failedSends() const {
  MutexLock lock(mu_);
  return failed_sends_;
}

std::uint64_t ClusterLimits::received() const {
  MutexLock lock(mu_);
  return received_;
}

std::string ClusterLimits::prometheusText() const {
  MutexLock lock(mu_);
  return fmt::format(
      "# HELP parley_cluster_limit_events_received_total Events of the other nodes' limits "
      "(login and token throttles, function HTTP rates) counted here.\n"
      "# TYPE parley_cluster_limit_events_received_total counter\n"
      "parley_cluster_limit_events_received_total {}\n"
      "# HELP parley_cluster_limit_sends_failed_total Limit events this node could not send to "
      "the other nodes.\n"
      "# TYPE parley_cluster_limit_sends_failed_total counter\n"
      "parley_cluster_limit_sends_failed_total {}\n",
      received_, failed_sends_);
}

}  // namespace parley::app
