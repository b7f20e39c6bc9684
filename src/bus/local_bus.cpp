// The in-process bus: a list of subscriptions and a sequence counter per subject.

#include <map>
#include <vector>

#include "bus/bus.h"
#include "common/shared_mutex.h"

namespace parley::bus {
namespace {

struct Entry {
  std::string filter;
  Handler handler;
  Responder responder;  // set for serve(): a request subject's responder
  // Held while the handler runs and by the subscription's destructor; recursive so a handler
  // may publish to a subject it also receives.
  RecursiveMutex call_mu;
  bool alive PARLEY_GUARDED_BY(call_mu) = true;
};

class LocalBus;

// One request's answer: done() once, with the reply or, when the Reply is dropped unanswered,
// Timeout.
struct Answer {
  std::function<void(Result<std::string>)> done;
  std::string subject;
  Mutex mu;
  bool answered PARLEY_GUARDED_BY(mu) = false;
  void give(Result<std::string> r) PARLEY_EXCLUDES(mu) {
    {
      MutexLock lock(mu);
      if (answered) return;
      answered = true;
    }
    if (done) done(std::move(r));
  }
  ~Answer() { give(std::unexpected(Error{ErrorCode::kTimeout, "bus: no answer on " + subject})); }
};

class LocalSubscription final : public Subscription {
 public:
  LocalSubscription(LocalBus& bus, std::shared_ptr<Entry> entry)
      : bus_(bus), entry_(std::move(entry)) {}
  ~LocalSubscription() override;

 private:
  LocalBus& bus_;
  std::shared_ptr<Entry> entry_;
};

class LocalBus final : public Bus {
 public:
  void publish(std::string subject, std::string data, std::function<void(Status)> done) override {
    BusMessage m{std::move(subject), std::move(data), 0};
    std::vector<std::shared_ptr<Entry>> targets;
    {
      MutexLock lock(mu_);
      m.sequence = ++sequences_[m.subject];
      for (const auto& e : entries_)
        if (subjectMatches(e->filter, m.subject)) targets.push_back(e);
    }
    for (const auto& e : targets) {
      RecursiveMutexLock call(e->call_mu);
      if (e->alive) e->handler(m);
    }
    if (done) done(Status{});
  }

  Result<std::unique_ptr<Subscription>> serve(std::string subject, Responder responder) override {
    auto e = std::make_shared<Entry>();
    e->filter = std::move(subject);
    e->responder = std::move(responder);
    {
      MutexLock lock(mu_);
      servers_.push_back(e);
    }
    return std::make_unique<LocalSubscription>(*this, std::move(e));
  }

  void request(std::string subject, std::string data, std::chrono::milliseconds,
               std::function<void(Result<std::string>)> done) override {
    std::shared_ptr<Entry> target;
    {
      MutexLock lock(mu_);
      for (const auto& e : servers_)
        if (e->filter == subject) target = e;
    }
    if (!target) {
      if (done)
        done(std::unexpected(Error{ErrorCode::kUnavailable, "bus: no responders on " + subject}));
      return;
    }
    auto answer = std::make_shared<Answer>();
    answer->done = std::move(done);
    answer->subject = subject;
    BusMessage m{std::move(subject), std::move(data), 0};
    RecursiveMutexLock call(target->call_mu);
    if (!target->alive) {
      answer->give(std::unexpected(Error{ErrorCode::kUnavailable, "bus: no responders"}));
      return;
    }
    target->responder(m, [answer](std::string r) { answer->give(std::move(r)); });
  }

  Result<std::unique_ptr<Subscription>> subscribe(std::string filter, Handler handler) override {
    auto e = std::make_shared<Entry>();
    e->filter = std::move(filter);
    e->handler = std::move(handler);
    {
      MutexLock lock(mu_);
      entries_.push_back(e);
    }
    return std::make_unique<LocalSubscription>(*this, std::move(e));
  }

  Status broadcast(std::string subject, std::string data) override {
    BusMessage m{std::move(subject), std::move(data), 0};
    std::vector<std::shared_ptr<Entry>> targets;
    {
      MutexLock lock(mu_);
      for (const auto& e : listeners_)
        if (subjectMatches(e->filter, m.subject)) targets.push_back(e);
    }
    for (const auto& e : targets) {
      RecursiveMutexLock call(e->call_mu);
      if (e->alive) e->handler(m);
    }
    return {};
  }

  // Every handler runs on the broadcaster's thread: `delivery` changes nothing here.
  Result<std::unique_ptr<Subscription>> listen(std::string filter, Handler handler,
                                               Delivery /*delivery*/) override {
    auto e = std::make_shared<Entry>();
    e->filter = std::move(filter);
    e->handler = std::move(handler);
    {
      MutexLock lock(mu_);
      listeners_.push_back(e);
    }
    return std::make_unique<LocalSubscription>(*this, std::move(e));
  }

  bool shared() const override { return false; }
  std::string describe() const override { return "local"; }

  void remove(const std::shared_ptr<Entry>& e) {
    {
      MutexLock lock(mu_);
      std::erase(entries_, e);
      std::erase(servers_, e);
      std::erase(listeners_, e);
    }
    RecursiveMutexLock call(e->call_mu);
    e->alive = false;
  }

 private:
  Mutex mu_;
  std::vector<std::shared_ptr<Entry>> entries_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Entry>> servers_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Entry>> listeners_ PARLEY_GUARDED_BY(mu_);  // listen()
  std::map<std::string, std::uint64_t, std::less<>> sequences_ PARLEY_GUARDED_BY(mu_);
};

LocalSubscription::~LocalSubscription() { bus_.remove(entry_); }

std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  while (true) {
    auto dot = s.find('.');
    out.push_back(s.substr(0, dot));
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  return out;
}

}  // namespace

std::unique_ptr<Bus> makeLocalBus() { return std::make_unique<LocalBus>(); }

std::string subjectToken(std::string_view text) {
  if (text.empty()) return "_";
  std::string out(text);
  for (auto& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

bool subjectMatches(std::string_view filter, std::string_view subject) {
  const auto f = tokens(filter);
  const auto s = tokens(subject);
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] == ">") return i + 1 == f.size() && s.size() > i;
    if (i >= s.size()) return false;
    if (f[i] != "*" && f[i] != s[i]) return false;
  }
  return f.size() == s.size();
}

}  // namespace parley::bus
