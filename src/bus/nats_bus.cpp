// The NATS JetStream bus over nats.c.

#include "bus/nats_bus.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/url/parse.hpp>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/thread_annotations.h"

namespace parley::bus {
namespace {

std::string natsText(natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  return last && *last ? std::string(last) : std::string(natsStatus_GetText(s));
}

Error unavailable(std::string_view what, natsStatus s) {
  return Error{ErrorCode::kUnavailable, std::string(what) + ": " + natsText(s)};
}

// Hands a subscription's messages to a thread of its own (Delivery::kOwnThread): nats.c's shared
// delivery thread only queues them here, so a handler that takes its time holds up this
// subscription alone.
class OwnThread {
 public:
  explicit OwnThread(std::function<void(natsMsg*)> run) : run_(std::move(run)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~OwnThread() { stop(); }
  OwnThread(const OwnThread&) = delete;
  OwnThread& operator=(const OwnThread&) = delete;

  // Queues `msg` (taking it) for the thread; destroys it at once after stop().
  void push(natsMsg* msg) {
    {
      MutexLock lock(mu_);
      if (!stopped_) {
        queue_.push_back(msg);
        cv_.notify_one();
        return;
      }
    }
    natsMsg_Destroy(msg);
  }

  // Ends the thread once its call in progress returned (never from that thread) and drops what
  // is still queued.
  void stop() {
    {
      MutexLock lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::deque<natsMsg*> left;
    {
      MutexLock lock(mu_);
      left.swap(queue_);
    }
    for (auto* m : left) natsMsg_Destroy(m);
  }

 private:
  void loop() {
    MutexLock lock(mu_);
    while (true) {
      while (!stopped_ && queue_.empty()) lock.wait(cv_);
      if (stopped_) return;
      natsMsg* m = queue_.front();
      queue_.pop_front();
      lock.unlock();
      run_(m);
      lock.lock();
    }
  }

  const std::function<void(natsMsg*)> run_;
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<natsMsg*> queue_ PARLEY_GUARDED_BY(mu_);
  bool stopped_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// What a subscription's callback needs; freed by nats.c's on-complete callback, after the last
// delivery. The connection uses nats.c's shared delivery threads (natsOptions_
// UseGlobalMessageDelivery): a subscription with a thread of its own (`own`) has them queue its
// messages there; a shared one's handler runs on the shared thread.
struct SubState {
  std::function<void(natsMsg*)> handler;  // gets the message, owns none of it
  Mutex call_mu;  // held while the handler runs and while the subscription is closed
  bool alive PARLEY_GUARDED_BY(call_mu) = true;
  std::unique_ptr<OwnThread> own;  // Delivery::kOwnThread

  // Calls the handler unless the subscription was closed, and frees the message.
  void run(natsMsg* msg) {
    {
      MutexLock lock(call_mu);
      if (alive) handler(msg);
    }
    natsMsg_Destroy(msg);
  }
};

void onMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* st = static_cast<SubState*>(closure);
  if (st->own)
    st->own->push(msg);
  else
    st->run(msg);
}

void onComplete(void* closure) { delete static_cast<SubState*>(closure); }

// A new subscription's state: `handler` called on a thread of its own, or on the shared one.
SubState* newSubState(std::function<void(natsMsg*)> handler, Delivery delivery) {
  auto* st = new SubState;
  st->handler = std::move(handler);
  if (delivery == Delivery::kOwnThread)
    st->own = std::make_unique<OwnThread>([st](natsMsg* m) { st->run(m); });
  return st;
}

class NatsSubscription final : public Subscription {
 public:
  NatsSubscription(natsSubscription* sub, SubState* st) : sub_(sub), st_(st) {}
  ~NatsSubscription() override {
    {
      MutexLock lock(st_->call_mu);  // waits for a call in progress
      st_->alive = false;
    }
    // Before unsubscribing: nats.c frees st_ (and its thread object) once the unsubscription
    // reached the end of the shared thread's queue. Messages queued meanwhile are dropped.
    if (st_->own) st_->own->stop();
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);  // st_ is freed by onComplete once nats.c is done with it
  }

 private:
  natsSubscription* sub_;
  SubState* st_;
};

// Subscribes `handler` to `subject` on core NATS (requests served, answers received, broadcasts
// heard).
Result<std::unique_ptr<NatsSubscription>> coreSubscribe(natsConnection* nc,
                                                        const std::string& subject,
                                                        std::function<void(natsMsg*)> handler,
                                                        Delivery delivery) {
  auto* st = newSubState(std::move(handler), delivery);
  natsSubscription* sub = nullptr;
  natsStatus s = natsConnection_Subscribe(&sub, nc, subject.c_str(), onMessage, st);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, onComplete, st);
  if (s != NATS_OK) {
    if (sub) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    delete st;  // no callback can run: the on-complete callback was not set
    return std::unexpected(unavailable("bus: subscribing to " + subject, s));
  }
  return std::make_unique<NatsSubscription>(sub, st);
}

std::string urlOf(natsConnection* nc) {
  char buf[256] = {};
  if (natsConnection_GetConnectedUrl(nc, buf, sizeof buf) != NATS_OK || buf[0] == '\0')
    return "the NATS server";
  return buf;
}
void onDisconnected(natsConnection* nc, void*) {
  if (natsConnection_IsClosed(nc)) return;  // closed by us: nothing to report
  spdlog::warn("bus: disconnected from {}", urlOf(nc));
}
void onReconnected(natsConnection* nc, void*) { spdlog::info("bus: reconnected to {}", urlOf(nc)); }

struct Pending {
  std::string subject;
  std::string data;
  std::function<void(Status)> done;
};

class NatsBus final : public Bus {
 public:
  NatsBus(std::string url, NatsOptions options)
      : url_(std::move(url)), options_(std::move(options)) {}

  ~NatsBus() override {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (publisher_.joinable()) publisher_.join();
    answers_.reset();  // no answer is received from here on
    {
      MutexLock lock(req_mu_);
      req_stopping_ = true;
    }
    req_cv_.notify_all();
    if (timer_.joinable()) timer_.join();  // fails the requests still waiting
    if (js_) jsCtx_Destroy(js_);
    if (nc_) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
    if (opts_) natsOptions_Destroy(opts_);
  }

  Status start() {
    natsStatus s = natsOptions_Create(&opts_);
    if (s == NATS_OK) s = natsOptions_SetURL(opts_, url_.c_str());
    if (s == NATS_OK) s = natsOptions_SetName(opts_, options_.name.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts_, options_.connect_timeout.count());
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts_, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts_, 250);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(opts_, options_.ping_interval.count());
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(opts_, options_.max_pings_out);
    // A node never gets back what it published itself (it ignored it anyway): a node watching
    // its own consumer's conversation would otherwise receive each of its own events once more.
    if (s == NATS_OK) s = natsOptions_SetNoEcho(opts_, true);
    // Deliveries on nats.c's shared delivery threads, not a thread per subscription: the relay
    // holds one per watched consumer (thousands on a busy node). Each subscription stays bound to
    // one of them, so its messages are still handed on one at a time, in order. The ones whose
    // handlers may take their time (Delivery::kOwnThread) are queued on to a thread of their own
    // (SubState). The pool is the process's: it grows to the largest size any bus asked for.
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(opts_, true);
    if (s == NATS_OK)
      s = nats_SetMessageDeliveryPoolSize(std::max(1, options_.shared_delivery_threads));
    // The callbacks take nothing of this object (nats.c may call them while the connection
    // closes, after the destructor began): they read the URL from the connection itself.
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts_, &onDisconnected, nullptr);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts_, &onReconnected, nullptr);
    if (s != NATS_OK) return std::unexpected(unavailable("bus: options", s));
    s = natsConnection_Connect(&nc_, opts_);
    if (s != NATS_OK) return std::unexpected(unavailable("bus: connecting to " + url_, s));
    jsOptions jo;
    jsOptions_Init(&jo);
    s = natsConnection_JetStream(&js_, nc_, &jo);
    if (s != NATS_OK) return std::unexpected(unavailable("bus: JetStream", s));

    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const std::string subjects = options_.subject_prefix + ".>";
    const char* list[] = {subjects.c_str()};
    cfg.Name = options_.stream.c_str();
    cfg.Subjects = list;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.MaxAge = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.max_age).count();
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    // Another node made it first: theirs is used as it is.
    if (s != NATS_OK && jerr != JSStreamNameExistErr)
      return std::unexpected(unavailable("bus: creating the stream " + options_.stream, s));
    natsInbox* inbox = nullptr;
    s = natsInbox_Create(&inbox);
    if (s != NATS_OK) return std::unexpected(unavailable("bus: inbox", s));
    inbox_ = inbox;
    natsInbox_Destroy(inbox);
    auto answers = coreSubscribe(
        nc_, inbox_ + ".*", [this](natsMsg* m) { onAnswer(m); }, Delivery::kOwnThread);
    if (!answers) return std::unexpected(answers.error());
    answers_ = std::move(*answers);
    publisher_ = std::thread([this] { publishLoop(); });
    timer_ = std::thread([this] { timeoutLoop(); });
    return {};
  }

  Result<std::unique_ptr<Subscription>> serve(std::string subject, Responder responder) override {
    if (auto ok = checkRequestSubject(subject); !ok) return std::unexpected(ok.error());
    natsConnection* nc = nc_;
    auto sub = coreSubscribe(
        nc_, subject,
        [nc, responder = std::move(responder)](natsMsg* msg) {
          BusMessage m;
          m.subject = natsMsg_GetSubject(msg);
          m.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
          const char* reply = natsMsg_GetReply(msg);
          std::string to = reply ? reply : "";
          responder(m, [nc, to = std::move(to)](std::string data) {
            if (to.empty()) return;
            natsStatus s =
                natsConnection_Publish(nc, to.c_str(), data.data(), static_cast<int>(data.size()));
            if (s != NATS_OK) spdlog::warn("bus: answering a request: {}", natsText(s));
          });
        },
        Delivery::kOwnThread);
    if (!sub) return std::unexpected(sub.error());
    return std::unique_ptr<Subscription>(std::move(*sub));
  }

  void request(std::string subject, std::string data, std::chrono::milliseconds timeout,
               std::function<void(Result<std::string>)> done) override {
    auto fail = [&](Error e) {
      if (done) done(std::unexpected(std::move(e)));
    };
    if (auto ok = checkRequestSubject(subject); !ok) return fail(ok.error());
    std::uint64_t id = 0;
    {
      MutexLock lock(req_mu_);
      if (req_stopping_) return fail(Error{ErrorCode::kUnavailable, "bus: closing"});
      if (waiting_.size() >= options_.max_requests)
        return fail(Error{ErrorCode::kUnavailable, "bus: too many requests waiting for answers"});
      id = ++next_request_;
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      waiting_.emplace(id, Waiting{deadline, subject, std::move(done)});
      deadlines_.emplace(deadline, id);
    }
    req_cv_.notify_all();
    const std::string reply = inbox_ + "." + std::to_string(id);
    natsStatus s = natsConnection_PublishRequest(nc_, subject.c_str(), reply.c_str(), data.data(),
                                                 static_cast<int>(data.size()));
    if (s != NATS_OK) {
      if (auto w = takeWaiting(id))
        if (w->done) w->done(std::unexpected(unavailable("bus: requesting on " + subject, s)));
    }
  }

  Status broadcast(std::string subject, std::string data) override {
    if (auto ok = checkRequestSubject(subject); !ok) return ok;
    natsStatus s =
        natsConnection_Publish(nc_, subject.c_str(), data.data(), static_cast<int>(data.size()));
    if (s != NATS_OK) return std::unexpected(unavailable("bus: broadcasting on " + subject, s));
    return {};
  }

  Result<std::unique_ptr<Subscription>> listen(std::string filter, Handler handler,
                                               Delivery delivery) override {
    if (auto ok = checkRequestSubject(filter); !ok) return std::unexpected(ok.error());
    auto sub = coreSubscribe(
        nc_, filter,
        [handler = std::move(handler)](natsMsg* msg) {
          BusMessage m;
          m.subject = natsMsg_GetSubject(msg);
          m.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
          handler(m);
        },
        delivery);
    if (!sub) return std::unexpected(sub.error());
    // A round trip: once the server answered, it has the subscription, so whatever is broadcast
    // from then on reaches it. Disconnected: nats.c subscribes when it reconnects (what is
    // broadcast meanwhile is lost, as for any listener then).
    // Not while disconnected: the caller (a session opening) would wait the whole 2 s for
    // nothing.
    if (natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED)
      if (natsStatus f = natsConnection_FlushTimeout(nc_, 2000); f != NATS_OK)
        spdlog::warn("bus: listening on {} not confirmed by the server: {}", filter, natsText(f));
    return std::unique_ptr<Subscription>(std::move(*sub));
  }

  void publish(std::string subject, std::string data, std::function<void(Status)> done) override {
    {
      MutexLock lock(mu_);
      if (!stopping_ && queue_.size() < options_.max_pending) {
        queue_.push_back(Pending{std::move(subject), std::move(data), std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    if (done)
      done(std::unexpected(Error{ErrorCode::kUnavailable, "bus: too many messages waiting"}));
  }

  Result<std::unique_ptr<Subscription>> subscribe(std::string filter, Handler handler) override {
    auto* st = newSubState(
        [handler = std::move(handler)](natsMsg* msg) {
          BusMessage m;
          m.subject = natsMsg_GetSubject(msg);
          m.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
          jsMsgMetaData* meta = nullptr;
          if (natsMsg_GetMetaData(&meta, msg) == NATS_OK && meta) {
            m.sequence = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
          }
          // Not a JetStream delivery (a flow-control or status message): nothing to hand on.
          if (m.sequence != 0) handler(m);
        },
        Delivery::kOwnThread);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverNew;
    so.Stream = options_.stream.c_str();
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Subscribe(&sub, js_, filter.c_str(), onMessage, st, nullptr, &so, &jerr);
    if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, onComplete, st);
    if (s != NATS_OK) {
      if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
      }
      delete st;  // no callback can run: the on-complete callback was not set
      return std::unexpected(unavailable("bus: subscribing to " + filter, s));
    }
    return std::make_unique<NatsSubscription>(sub, st);
  }

  bool shared() const override { return true; }
  std::string describe() const override { return url_; }
  bool connected() const override {
    return nc_ != nullptr && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  }

 private:
  void publishLoop() {
    while (true) {
      Pending p;
      {
        MutexLock lock(mu_);
        while (!stopping_ && queue_.empty()) lock.wait(cv_);
        if (queue_.empty()) return;  // stopping, nothing left
        p = std::move(queue_.front());
        queue_.pop_front();
      }
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 5000;
      jsPubAck* ack = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = js_Publish(&ack, js_, p.subject.c_str(), p.data.data(),
                                static_cast<int>(p.data.size()), &po, &jerr);
      if (ack) jsPubAck_Destroy(ack);
      Status result{};
      if (s != NATS_OK) {
        result = std::unexpected(unavailable("bus: publishing on " + p.subject, s));
        spdlog::warn("{}", result.error().message);
      }
      if (p.done) p.done(result);
    }
  }

  struct Waiting {
    std::chrono::steady_clock::time_point deadline;
    std::string subject;
    std::function<void(Result<std::string>)> done;
  };

  Status checkRequestSubject(const std::string& subject) const {
    const std::string stream = options_.subject_prefix + ".";
    if (subject.empty() || subject.starts_with(stream) || subject.starts_with("_INBOX."))
      return std::unexpected(Error{
          ErrorCode::kInvalid,
          "bus: a request subject must not be under " + stream + " (the stream's): " + subject});
    return {};
  }

  std::optional<Waiting> takeWaiting(std::uint64_t id) {
    MutexLock lock(req_mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return std::nullopt;
    Waiting w = std::move(it->second);
    deadlines_.erase({w.deadline, id});
    waiting_.erase(it);
    return w;
  }

  // An answer on this bus's inbox (`<inbox>.<id>`), or the server's "no responders" status.
  void onAnswer(natsMsg* msg) {
    std::string_view subject = natsMsg_GetSubject(msg);
    const auto dot = subject.rfind('.');
    std::uint64_t id = 0;
    if (dot == std::string_view::npos) return;
    const auto tail = subject.substr(dot + 1);
    if (std::from_chars(tail.data(), tail.data() + tail.size(), id).ec != std::errc{}) return;
    auto w = takeWaiting(id);
    if (!w || !w->done) return;  // timed out before
    if (natsMsg_IsNoResponders(msg))
      return w->done(
          std::unexpected(Error{ErrorCode::kUnavailable, "bus: no responders on " + w->subject}));
    w->done(
        std::string(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
  }

  // Fails the requests whose time is up; at the end, all of them.
  void timeoutLoop() {
    while (true) {
      std::vector<Waiting> expired;
      bool stop = false;
      {
        MutexLock lock(req_mu_);
        if (!req_stopping_) {
          if (deadlines_.empty())
            lock.wait(req_cv_);
          else
            // A copy: the wait reads its deadline again after waking, and an answer may have
            // erased the set's node meanwhile.
            lock.waitUntil(req_cv_,
                           std::chrono::steady_clock::time_point(deadlines_.begin()->first));
        }
        stop = req_stopping_;
        const auto now = std::chrono::steady_clock::now();
        while (!deadlines_.empty() && (stop || deadlines_.begin()->first <= now)) {
          const auto id = deadlines_.begin()->second;
          deadlines_.erase(deadlines_.begin());
          auto it = waiting_.find(id);
          if (it == waiting_.end()) continue;
          expired.push_back(std::move(it->second));
          waiting_.erase(it);
        }
      }
      for (auto& w : expired)
        if (w.done)
          w.done(std::unexpected(Error{ErrorCode::kTimeout, "bus: no answer on " + w.subject}));
      if (stop) return;
    }
  }

  const std::string url_;
  const NatsOptions options_;
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_ PARLEY_GUARDED_BY(mu_);
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread publisher_;

  std::string inbox_;  // this bus's answers arrive on <inbox_>.<request id>
  std::unique_ptr<NatsSubscription> answers_;
  Mutex req_mu_;
  std::condition_variable req_cv_;
  std::map<std::uint64_t, Waiting> waiting_ PARLEY_GUARDED_BY(req_mu_);
  std::set<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> deadlines_
      PARLEY_GUARDED_BY(req_mu_);
  std::uint64_t next_request_ PARLEY_GUARDED_BY(req_mu_) = 0;
  bool req_stopping_ PARLEY_GUARDED_BY(req_mu_) = false;
  std::thread timer_;
};

}  // namespace

Status checkNatsUrl(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u) return std::unexpected(Error{ErrorCode::kInvalid, "not a URI: " + url});
  if (u->scheme() != "nats" && u->scheme() != "tls")
    return std::unexpected(
        Error{ErrorCode::kInvalid, "must be nats://HOST:PORT (or tls://HOST:PORT): " + url});
  if (u->host().empty()) return std::unexpected(Error{ErrorCode::kInvalid, "no host: " + url});
  if (u->has_port() && (u->port_number() == 0 || u->port().size() > 5))
    return std::unexpected(Error{ErrorCode::kInvalid, "bad port: " + url});
  if (!u->encoded_path().empty() && u->encoded_path() != "/")
    return std::unexpected(Error{ErrorCode::kInvalid, "no path allowed: " + url});
  return {};
}

Result<std::unique_ptr<Bus>> connectNatsBus(const std::string& url, NatsOptions options) {
  if (auto ok = checkNatsUrl(url); !ok) return std::unexpected(ok.error());
  auto bus = std::make_unique<NatsBus>(url, std::move(options));
  if (auto s = bus->start(); !s) return std::unexpected(s.error());
  return bus;
}

}  // namespace parley::bus
