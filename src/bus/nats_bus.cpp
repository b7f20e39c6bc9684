// The NATS JetStream bus over nats.c.

#include "bus/nats_bus.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <boost/url/parse.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
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

// What a subscription's callback needs; freed by nats.c's on-complete callback, after the last
// delivery.
struct SubState {
  Handler handler;
  std::mutex call_mu;  // held while the handler runs and while the subscription is closed
  bool alive = true;   // guarded by call_mu
};

void onMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* st = static_cast<SubState*>(closure);
  BusMessage m;
  m.subject = natsMsg_GetSubject(msg);
  m.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK && meta) {
    m.sequence = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
  }
  natsMsg_Destroy(msg);
  if (m.sequence == 0) return;  // not a JetStream delivery (a flow-control or status message)
  std::lock_guard lock(st->call_mu);
  if (st->alive) st->handler(m);
}

void onComplete(void* closure) { delete static_cast<SubState*>(closure); }

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

class NatsSubscription final : public Subscription {
 public:
  NatsSubscription(natsSubscription* sub, SubState* st) : sub_(sub), st_(st) {}
  ~NatsSubscription() override {
    {
      std::lock_guard lock(st_->call_mu);
      st_->alive = false;
    }
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);  // st_ is freed by onComplete once nats.c is done with it
  }

 private:
  natsSubscription* sub_;
  SubState* st_;
};

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
    publisher_ = std::thread([this] { publishLoop(); });
    return {};
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
    auto* st = new SubState;
    st->handler = std::move(handler);
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
