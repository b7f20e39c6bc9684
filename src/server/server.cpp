#include "server/server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/url.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/thread_annotations.h"
#include "server/auth.h"
#include "server/blocking_pool.h"
#include "server/http_app.h"
#include "server/jwt.h"
#include "server/metrics.h"
#include "server/net.h"
#include "server/oauth.h"
#include "server/password_hasher.h"
#include "server/protocol/directory.h"
#include "server/protocol/hub.h"
#include "server/tls_files.h"

namespace parley::server {
namespace {

// The token endpoint's throttle: the login throttle's numbers and peers, under its own name.
LoginThrottleOptions oauthThrottle(LoginThrottleOptions o) {
  o.peer_name = "oauth";
  return o;
}

class ServerImpl final : public Server {
 public:
  ServerImpl(store::Store& store, conversation::ConversationService& service, const Clock& clock,
             ServerOptions opts, std::string jwt_key, TlsFiles tls)
      : store_(store),
        service_(service),
        clock_(clock),
        opts_(std::move(opts)),
        tls_(std::move(tls)),
        blocking_(makeBlockingPool(opts_.blocking_threads)),
        passwords_(
            PasswordPoolOptions{opts_.password_threads, opts_.password_queue, opts_.password_nice}),
        auth_(store.accounts(), clock, passwords_, std::move(jwt_key),
              AuthOptions{opts_.session_ttl_ms, 24LL * 3600 * 1000, "parley", opts_.login_throttle,
                          opts_.account_status_interval}),
        oauth_(
            store.oauth(), auth_, clock,
            OAuthOptions{opts_.oauth_token_ttl_ms, 100, 100, oauthThrottle(opts_.login_throttle)}),
        directory_(store.accounts(), *blocking_),
        hub_(protocol::HubOptions{opts_.consumer_profiles}) {
    // Revocation: a user's sockets close with its credentials; a disabled account's, all of them.
    auth_.setRevocationListener([this](const AccountId& acc, const std::optional<UserId>& user) {
      if (user) {
        hub_.closeUser(acc, *user);
      } else {
        hub_.closeAccount(acc);
      }
    });
    if (opts_.on_credentials_change) auth_.setCredentialsListener(opts_.on_credentials_change);
    protocol::SessionOptions so;
    so.init_timeout = opts_.consumer_init_timeout;
    so.revalidate_interval = opts_.session_revalidate_interval;
    app_ = std::make_unique<App>(AppDeps{
        RestDeps{store_, service_, directory_, auth_, oauth_, *blocking_, clock_,
                 opts_.password_cost},
        protocol::SessionDeps{service_, hub_, directory_, auth_, *blocking_, clock_, metrics_, so},
        metrics_, StaticFiles(opts_.web_dir),
        MetricsAccess{opts_.metrics_token, opts_.metrics_tenant_labels}});
    metrics_.addSource([this] { return hub_.metricsText(); });
  }

  ~ServerImpl() override { stop(); }

  Status init() { return directory_.preloadAll(); }

  // Server
  Status addHandler(std::shared_ptr<api::Handler> handler) override {
    return app_->addHandler(std::move(handler));
  }
  void setGateway(std::shared_ptr<api::Handler> gateway) override {
    app_->setGateway(std::move(gateway));
  }
  void setHealthCheck(std::function<std::optional<std::string>()> unhealthy) override {
    app_->setHealthCheck(std::move(unhealthy));
  }
  void addMetricsSource(std::function<std::string()> source) override {
    metrics_.addSource(std::move(source));
  }
  void handleLocal(HttpRequest request, std::function<void(HttpResponse)> done) override {
    if (!serving_.load()) {
      HttpResponse r;
      r.status = 503;
      r.body = R"({"error":{"code":"UNAVAILABLE","message":"the server is not serving"}})";
      return done(std::move(r));
    }
    request.segments.clear();
    request.query.clear();
    auto u = boost::urls::parse_origin_form(request.target);
    if (!u) {
      HttpResponse r;
      r.status = 400;
      r.body = R"({"error":{"code":"INVALID","message":"the request target is not a path"}})";
      return done(std::move(r));
    }
    for (auto seg : u->segments()) request.segments.emplace_back(seg);
    for (auto p : u->params()) request.query[std::string(p.key)] = std::string(p.value);
    app_->handle(std::move(request), std::move(done));
  }

  Result<Endpoints> start() override {
    NetOptions no;
    no.http_listen = opts_.http_listen;
    no.https_listen = opts_.https_listen;
    no.http_bound = opts_.http_bound;
    no.https_bound = opts_.https_bound;
    no.cert_path = tls_.cert_path;
    no.key_path = tls_.key_path;
    no.threads = opts_.threads;
    no.max_body_bytes = opts_.max_body_bytes;
    no.max_frame_bytes = opts_.max_frame_bytes;
    auto net = makeNet(no, *app_, metrics_);
    if (!net) return std::unexpected(net.error());
    net_ = std::move(*net);
    auto ports = net_->listen();
    if (!ports) return std::unexpected(ports.error());
    if (!opts_.public_url.empty()) {
      auto authority = checkPublicUrl(opts_.public_url);
      if (!authority) return std::unexpected(authority.error());
      app_->setPublicHost(*authority);
    } else {
      app_->setPublicHost(!ports->https_host.empty() ? ports->https_host : ports->http_host);
    }
    subscription_ = service_.subscribe(hub_);
    auth_.refreshAccountStatus();
    // Expired access tokens are also dropped whenever their app is given a new one.
    if (auto st = store_.oauth().deleteExpiredAccessTokens(clock_.nowMs()); !st)
      spdlog::warn("dropping expired OAuth access tokens failed: {}", st.error().message);
    startAccountWatch();
    net_->start();
    Endpoints ep;
    if (!ports->http_host.empty()) ep.http_url = "http://" + ports->http_host;
    if (!ports->https_host.empty()) ep.https_url = "https://" + ports->https_host;
    ep.ca_path = tls_.ca_path;
    started_ = true;
    serving_.store(true);
    return ep;
  }

  bool drain(std::chrono::milliseconds deadline) override {
    if (!net_ || stopped_) return true;
    return net_->drain(deadline);
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    serving_.store(false);
    stopAccountWatch();
    if (net_) net_->stop(std::chrono::milliseconds(5000));
    subscription_.reset();
    blocking_->join();
  }

  std::vector<boost::asio::io_context*> ioContexts() const override {
    if (!net_ || !started_ || stopped_) return {};
    return net_->ioContexts();
  }

  conversation::ConversationListener* sessionEvents() override { return &hub_; }
  void dropCachedCredentials(const AccountId& acc) override { auth_.dropCachedCredentials(acc); }
  void setSessionInterest(SessionInterest* interest) override { hub_.setSessionInterest(interest); }

 private:
  // Reads the accounts' statuses every account_status_interval on its own thread (a store read;
  // an account disabled from another process is noticed this way).
  void startAccountWatch() {
    watch_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "account-watch");
      MutexLock lock(watch_mu_);
      while (!watch_stop_) {
        lock.waitFor(watch_cv_, opts_.account_status_interval);
        if (watch_stop_) break;
        lock.unlock();
        auth_.refreshAccountStatus();
        lock.lock();
      }
    });
  }
  void stopAccountWatch() {
    {
      MutexLock lock(watch_mu_);
      watch_stop_ = true;
    }
    watch_cv_.notify_all();
    if (watch_.joinable()) watch_.join();
  }

  store::Store& store_;
  conversation::ConversationService& service_;
  const Clock& clock_;
  ServerOptions opts_;
  TlsFiles tls_;
  Metrics metrics_;
  std::unique_ptr<BlockingPool> blocking_;
  PasswordPool passwords_;
  Auth auth_;
  OAuth oauth_;
  protocol::Directory directory_;
  protocol::Hub hub_;
  std::unique_ptr<App> app_;
  std::unique_ptr<Net> net_;
  conversation::Subscription subscription_;
  bool started_ = false;
  bool stopped_ = false;
  // Between start() and stop(): handleLocal answers.
  std::atomic<bool> serving_{false};
  std::thread watch_;
  Mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stop_ PARLEY_GUARDED_BY(watch_mu_) = false;
};

}  // namespace

Result<std::string> checkPublicUrl(const std::string& url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u) return invalid("the public URL '" + url + "' is not an absolute URL");
  if (u->scheme_id() != boost::urls::scheme::http && u->scheme_id() != boost::urls::scheme::https)
    return invalid("the public URL '" + url + "' is not http:// or https://");
  if (u->host().empty()) return invalid("the public URL '" + url + "' has no host");
  if (u->has_userinfo()) return invalid("the public URL '" + url + "' must not carry user info");
  if (u->has_port() && (u->port_number() == 0 || u->port() != std::to_string(u->port_number())))
    return invalid("the public URL '" + url + "' has a bad port");
  if ((!u->encoded_path().empty() && u->encoded_path() != "/") || u->has_query() ||
      u->has_fragment())
    return invalid("the public URL '" + url + "' must not have a path, query or fragment");
  return std::string(u->encoded_host_and_port());
}

Result<std::unique_ptr<Server>> makeServer(store::Store& store,
                                           conversation::ConversationService& service,
                                           const Clock& clock, ServerOptions options) {
  if (options.data_dir.empty()) return invalid("the server needs a data directory");
  if (!options.public_url.empty()) {
    if (auto authority = checkPublicUrl(options.public_url); !authority)
      return std::unexpected(authority.error());
  }
  TlsFiles tls;
  if (!options.https_listen.empty()) {
    if (!options.tls_cert.empty() || !options.tls_key.empty()) {
      if (options.tls_cert.empty() || options.tls_key.empty())
        return invalid("--tls-cert and --tls-key must be given together");
      tls.cert_path = options.tls_cert;
      tls.key_path = options.tls_key;
    } else {
      auto t = ensureTlsFiles(options.data_dir);
      if (!t) return std::unexpected(t.error());
      tls = *t;
    }
  }
  auto key = loadOrCreateJwtKey(options.data_dir);
  if (!key) return std::unexpected(key.error());
  auto s = std::make_unique<ServerImpl>(store, service, clock, std::move(options), std::move(*key),
                                        std::move(tls));
  if (auto st = s->init(); !st) return std::unexpected(st.error());
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace parley::server
