#include "server/login_throttle.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <vector>

namespace parley::server {
namespace {

std::string lowerAscii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string waitText(std::chrono::milliseconds ms) {
  const auto s = (ms.count() + 999) / 1000;
  if (s >= 120) return fmt::format("{} minutes", (s + 59) / 60);
  return fmt::format("{} second{}", s, s == 1 ? "" : "s");
}

}  // namespace

LoginThrottle::LoginThrottle(const Clock& clock, LoginThrottleOptions options)
    : clock_(clock), opts_(std::move(options)) {
  if (opts_.peers)
    opts_.peers->attach(opts_.peer_name, [this](std::string_view event) { receive(event); });
}

LoginThrottle::~LoginThrottle() {
  if (opts_.peers) opts_.peers->detach(opts_.peer_name);
}

void LoginThrottle::publish(const char* what, const Admission& a) {
  if (!opts_.peers) return;
  boost::json::object o{{"k", what}, {"u", a.user_key}};
  if (!a.address.empty()) o["a"] = a.address;
  opts_.peers->publish(opts_.peer_name, boost::json::serialize(o));
}

void LoginThrottle::receive(std::string_view event) {
  boost::system::error_code ec;
  auto v = boost::json::parse(event, ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (!o) return;
  const auto* kind = o->if_contains("k");
  const auto* user = o->if_contains("u");
  const auto* address = o->if_contains("a");
  if (!kind || !kind->is_string() || !user || !user->is_string() || user->as_string().empty() ||
      (address && !address->is_string()))
    return;
  const std::string user_key(user->as_string());
  const std::string addr = address ? std::string(address->as_string()) : std::string();
  const TimeMs now = clock_.nowMs();
  MutexLock lock(mu_);
  if (kind->as_string() == "f") {
    if (!users_.contains(user_key)) trim(users_, opts_.user, now);
    recordFailure(users_[user_key], opts_.user, now);
    if (!addr.empty()) {
      if (!addresses_.contains(addr)) trim(addresses_, opts_.address, now);
      recordFailure(addresses_[addr], opts_.address, now);
    }
  } else if (kind->as_string() == "s") {
    // As for a local success: the user's record is reset, the address keeps its failures.
    resetUser(user_key);
  } else {
    return;
  }
  ++peer_events_;
}

std::optional<std::chrono::milliseconds> LoginThrottle::refusal(Entry& e, const ThrottlePolicy& p,
                                                                TimeMs now) {
  if (e.failures > 0 && e.blocked_until <= now && now - e.last_failure >= p.forget_after.count()) {
    e.failures = 0;
    e.blocked_until = 0;
  }
  if (e.blocked_until > now) return std::chrono::milliseconds(e.blocked_until - now);
  // Past the free failures, one attempt at a time: the next waits for this one's backoff.
  if (e.failures + e.in_flight >= p.free_failures && e.in_flight > 0)
    return std::chrono::milliseconds(p.first_backoff);
  return std::nullopt;
}

void LoginThrottle::recordFailure(Entry& e, const ThrottlePolicy& p, TimeMs now) {
  ++e.failures;
  e.last_failure = now;
  if (e.failures >= p.lockout_failures) {
    e.blocked_until = now + p.lockout.count();
  } else if (e.failures >= p.free_failures) {
    const int step = std::min(e.failures - p.free_failures, 30);
    const auto backoff =
        std::min<std::int64_t>(p.first_backoff.count() << step, p.max_backoff.count());
    e.blocked_until = now + backoff;
  }
}

void LoginThrottle::trim(Table& t, const ThrottlePolicy& p, TimeMs now) {
  if (t.size() < opts_.max_entries) return;
  // First whatever has nothing to remember any more.
  std::erase_if(t, [&](const auto& kv) {
    const Entry& e = kv.second;
    return e.in_flight == 0 && e.blocked_until <= now &&
           (e.failures == 0 || now - e.last_failure >= p.forget_after.count());
  });
  if (t.size() < opts_.max_entries) return;
  // Then the older half by last failure (keys with attempts in flight stay).
  std::vector<TimeMs> times;
  times.reserve(t.size());
  for (const auto& [_, e] : t)
    if (e.in_flight == 0) times.push_back(e.last_failure);
  if (times.empty()) return;
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  const TimeMs cut = *mid;
  std::erase_if(
      t, [&](const auto& kv) { return kv.second.in_flight == 0 && kv.second.last_failure <= cut; });
}

std::variant<LoginThrottle::Admission, LoginThrottle::Denial> LoginThrottle::admit(
    const std::string& account, const std::string& login_name, const std::string& address) {
  const TimeMs now = clock_.nowMs();
  Admission a{account + "/" + lowerAscii(login_name), address};
  MutexLock lock(mu_);
  auto check = [&](Table& t, const ThrottlePolicy& p, const std::string& key,
                   const char* what) -> std::optional<Denial> {
    auto it = t.find(key);
    if (it == t.end()) return std::nullopt;
    auto wait = refusal(it->second, p, now);
    if (!wait) return std::nullopt;
    if (it->second.failures == 0)
      return Denial{
          *wait, fmt::format("too many logins for this {} at the same time; try again in {}", what,
                             waitText(*wait))};
    return Denial{*wait, fmt::format("too many failed logins for this {}; try again in {}", what,
                                     waitText(*wait))};
  };
  if (auto d = check(users_, opts_.user, a.user_key, "user")) return *d;
  if (!address.empty())
    if (auto d = check(addresses_, opts_.address, address, "client address")) return *d;
  if (!users_.contains(a.user_key)) trim(users_, opts_.user, now);
  ++users_[a.user_key].in_flight;
  if (!address.empty()) {
    if (!addresses_.contains(address)) trim(addresses_, opts_.address, now);
    ++addresses_[address].in_flight;
  }
  return a;
}

void LoginThrottle::resetUser(const std::string& user_key) {
  auto it = users_.find(user_key);
  if (it == users_.end()) return;
  if (it->second.in_flight == 0) {
    users_.erase(it);
  } else {
    it->second.failures = 0;
    it->second.blocked_until = 0;
  }
}

void LoginThrottle::release(Table& t, const std::string& key) {
  auto it = t.find(key);
  if (it != t.end() && it->second.in_flight > 0) --it->second.in_flight;
}

void LoginThrottle::failed(const Admission& a) {
  const TimeMs now = clock_.nowMs();
  {
    MutexLock lock(mu_);
    release(users_, a.user_key);
    recordFailure(users_[a.user_key], opts_.user, now);
    if (!a.address.empty()) {
      release(addresses_, a.address);
      recordFailure(addresses_[a.address], opts_.address, now);
    }
  }
  publish("f", a);
}

void LoginThrottle::succeeded(const Admission& a) {
  {
    MutexLock lock(mu_);
    release(users_, a.user_key);
    resetUser(a.user_key);
    if (!a.address.empty()) release(addresses_, a.address);
  }
  publish("s", a);
}

void LoginThrottle::cancelled(const Admission& a) {
  MutexLock lock(mu_);
  release(users_, a.user_key);
  if (!a.address.empty()) release(addresses_, a.address);
}

std::size_t LoginThrottle::sizeForTest() const {
  MutexLock lock(mu_);
  return users_.size() + addresses_.size();
}

std::uint64_t LoginThrottle::peerEvents() const {
  MutexLock lock(mu_);
  return peer_events_;
}

}  // namespace parley::server
