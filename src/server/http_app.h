#pragma once

// The router: everything the server answers over HTTP and WebSocket upgrades, on plain values
// (http_types.h) so it is testable without sockets.
//   GET  /healthz, /metrics (the metrics token)
//   GET  /api/account/{acc}/service/baseURI.json          (CSDS)
//   POST /api/account/{acc}/login|refresh|logout|signup    (LivePerson login service, idp)
//   POST /api/account/{acc}/oauth/token                    (OAuth 2.0 client credentials)
//   *    /api/v1/accounts/{acc}/…                          (REST v1: core + api::Handlers)
//   POST /api/account/{acc}/lambdas|events/…               (functions gateway, setGateway)
//   WS   /ws_api/account/{acc}/messaging/brand/{bearer}    (agent/bot socket)
//   WS   /ws_api/account/{acc}/messaging/consumer          (consumer socket)
//   GET  anything else                                     (static console, SPA fallback)
// Thread-safe. Owned by the Server.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/thread_annotations.h"
#include "server/auth.h"
#include "server/http_types.h"
#include "server/metrics.h"
#include "server/protocol/protocol_session.h"
#include "server/rest.h"
#include "server/static_files.h"

namespace parley::server {

struct AppDeps {
  RestDeps rest;
  protocol::SessionDeps session;
  Metrics& metrics;
  StaticFiles static_files;
  // Who may read /metrics and whether it names tenants. Default: off (no token), summed.
  MetricsAccess metrics_access;
};

class App final : public HttpApp {
 public:
  explicit App(AppDeps deps);

  // Registers a handler for the REST resources it names. Call before serving. A resource that
  // the core or an earlier handler owns is refused (Conflict).
  Status addHandler(std::shared_ptr<api::Handler> handler);
  // The functions gateway (LivePerson's faasGW): /api/account/{acc}/lambdas|events/… are
  // authenticated here and handed to it with the path after {acc}. Call before serving.
  void setGateway(std::shared_ptr<api::Handler> gateway);
  // The "host:port" CSDS points clients at (the HTTPS listener). Call before serving.
  void setPublicHost(std::string host_port);
  // Asked by every GET /healthz (on the io thread: it must not block): the reason this node
  // should get no traffic now (e.g. a cluster node cut off from the bus), answered as 503
  // {"status":"unavailable","reason":…}; nullopt for 200 {"status":"ok"}. Without one, always
  // 200. Call before serving.
  void setHealthCheck(std::function<std::optional<std::string>()> unhealthy);

  // HttpApp
  void handle(HttpRequest request, HttpDone done) override;
  void upgrade(HttpRequest request, std::function<void(UpgradeDecision)> done) override;

 private:
  // GET /metrics with the metrics token (MetricsAccess).
  void metrics(const HttpRequest& req, HttpDone done);
  void csds(const HttpRequest& req, const std::string& acc, HttpDone done);
  void login(const HttpRequest& req, const std::string& acc, HttpDone done);
  void refresh(const HttpRequest& req, const std::string& acc, HttpDone done);
  void logout(const HttpRequest& req, const std::string& acc, HttpDone done);
  void signup(const HttpRequest& req, const std::string& acc, HttpDone done);
  // POST oauth/token (oauth.h): the token request read here, the rest on the blocking pool.
  void oauthToken(HttpRequest req, const std::string& acc, HttpDone done);
  void restV1(HttpRequest req, HttpDone done);
  // The gateway: a token in Auth's verified-token cache is dispatched on the calling (io)
  // thread; any other is verified on the blocking pool (and then cached).
  void gateway(HttpRequest req, HttpDone done);
  // The account check and the hand-over to the gateway handler, for a verified principal.
  void dispatchGateway(const Principal& principal, HttpRequest req, HttpDone done);
  bool hasHandler(const std::string& first_segment) const;
  // "skills, users, …" and every registered handler's resources.
  std::string knownResources() const;
  std::string publicHost(const HttpRequest& req) const;

  AppDeps deps_;
  std::vector<std::shared_ptr<api::Handler>> handlers_;    // written before serving only
  std::shared_ptr<api::Handler> gateway_;                  // written before serving only
  std::function<std::optional<std::string>()> unhealthy_;  // written before serving only
  mutable Mutex mu_;
  std::string public_host_ PARLEY_GUARDED_BY(mu_);
};

// Reads a cookie value from a Cookie header; "" when absent.
std::string cookieValue(const std::string& cookie_header, const std::string& name);
// The token of "Authorization: <scheme> <token>" when the scheme matches (case-insensitive).
std::string authToken(const std::string& authorization, const std::string& scheme);

}  // namespace parley::server
