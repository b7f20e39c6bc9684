#pragma once

// The Parley server: HTTP + HTTPS listeners, TLS material, authentication, REST v1 (core
// resources plus registered api::Handlers), LivePerson-compatible endpoints and the messaging
// protocol sockets, static console files, /healthz and /metrics. The public face of
// src/server; no Beast/Asio types cross it.
//
// Lifecycle: create() → addHandler()/addMetricsSource() → start() → stop(). Owned by main; the
// store, the conversation service and the clock must outlive it. Thread-safe after start().

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/api.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/result.h"
#include "conversation/consumer_profiles.h"
#include "conversation/conversation_service.h"
#include "server/http_types.h"
#include "server/login_throttle.h"
#include "server/metrics.h"
#include "server/net.h"
#include "server/session_interest.h"
#include "store/store.h"

namespace parley::server {

struct ServerOptions {
  // Data directory (TLS material under DIR/tls, the JWT key under DIR/keys). REQUIRES: set.
  std::string data_dir;
  // Plain HTTP listener "HOST:PORT"; empty disables it. Default: 127.0.0.1:8080.
  std::string http_listen = "127.0.0.1:8080";
  // HTTPS listener; empty disables it. Default: 127.0.0.1:8443.
  std::string https_listen = "127.0.0.1:8443";
  // Listeners bound ahead (bindListenSocket, net.h) for http_listen / https_listen: start()
  // takes them instead of binding. Default: none (start() binds).
  std::shared_ptr<ListenSocket> http_bound;
  std::shared_ptr<ListenSocket> https_bound;
  // Bring-your-own certificate chain and key (PEM). Default: generated under DIR/tls.
  std::string tls_cert;
  std::string tls_key;
  // io threads. Default: 0 = hardware concurrency.
  int threads = 0;
  // Threads for blocking store work. Default: 4.
  int blocking_threads = 4;
  // The built console (web/dist). Empty: a page says it is not built.
  std::string web_dir;
  // Login session lifetime. Default: 12 h.
  TimeMs session_ttl_ms = 12LL * 3600 * 1000;
  // Lifetime of the functions gateway's OAuth 2.0 access tokens (`expires_in`). Default: 1 h.
  // REQUIRES: >= 1000.
  TimeMs oauth_token_ttl_ms = 3600LL * 1000;
  // Cost of password hashes made over REST. Default: interactive.
  crypto::PasswordCost password_cost = crypto::PasswordCost::kInteractive;
  // Threads that check and hash passwords (at a lower CPU priority), and the jobs that may wait
  // for them before logins are refused with 503 + Retry-After. Default: 1 and 64.
  int password_threads = 1;
  std::size_t password_queue = 64;
  // Added to the password threads' nice value; raise it to favour the rest of the API over
  // logins when the host is busy (at 10 a login on a loaded shared host took seconds).
  // Default: 0.
  int password_nice = 0;
  // Login throttling per user and per client address (numbers in the README's Limits table).
  // With `login_throttle.peers`, it and the token endpoint's throttle ("oauth") hold across the
  // nodes of a cluster.
  LoginThrottleOptions login_throttle;
  // How often the accounts' statuses are read again (an account disabled by `parley account
  // disable` while the server runs has its sockets closed and its logins refused within about
  // this long). Default: 1 s.
  std::chrono::milliseconds account_status_interval{1000};
  // Largest REST body (413 above) and WebSocket message (close 1009 above).
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_frame_bytes = 256 << 10;
  // A consumer socket without Authorization must send InitConnection within this time.
  std::chrono::milliseconds consumer_init_timeout{5000};
  // How often agent sockets re-check their login session (expired/revoked → close 4401).
  std::chrono::milliseconds session_revalidate_interval{30'000};
  // The bearer token GET /metrics needs. Empty: /metrics answers 403. Default: empty.
  std::string metrics_token;
  // Whether /metrics keeps the account, bot and function labels. Default: summed away.
  TenantLabels metrics_tenant_labels = TenantLabels::kSummed;
  // Where the protocol hub keeps consumer profiles (SetUserProfile); main shares it with the
  // bot connector. Default: the server's own.
  std::shared_ptr<conversation::ConsumerProfiles> consumer_profiles;
  // The address clients use (a balancer in front of several nodes), "http[s]://HOST[:PORT]"; CSDS
  // answers with its HOST[:PORT]. Default: empty, the node's own HTTPS (else HTTP) listener.
  // REQUIRES: empty or accepted by checkPublicUrl.
  std::string public_url;
  // Called with the account whenever a credential of it changes on this node (a logout, a
  // revoked user, a deleted API key or OAuth app; Auth::credentialsChanged): cluster mode tells
  // the other nodes, which call Server::dropCachedCredentials. On any thread; must not block.
  // Default: none.
  std::function<void(const AccountId&)> on_credentials_change;
};

// Checks a public URL (ServerOptions::public_url): an absolute http or https URL with a host,
// an optional port, and no user info, path (other than "/"), query or fragment. Returns its
// authority "HOST[:PORT]" (what CSDS answers); Invalid, saying why, otherwise.
Result<std::string> checkPublicUrl(const std::string& url);

struct Endpoints {
  std::string http_url;   // "http://127.0.0.1:P" or "" when disabled
  std::string https_url;  // "https://127.0.0.1:Q" or ""
  std::string ca_path;    // DIR/tls/ca.pem, or "" with a brought certificate
};

class Server {
 public:
  virtual ~Server() = default;

  // Registers the owner of REST resources (e.g. functions, secrets, allowlist, bots,
  // richcontent). Before start(). Conflict when a resource is taken.
  virtual Status addHandler(std::shared_ptr<api::Handler> handler) = 0;
  // Sets the functions gateway (/api/account/{acc}/lambdas|events/…; see http_app.h). Before
  // start(). Without one those paths are 404.
  virtual void setGateway(std::shared_ptr<api::Handler> gateway) = 0;
  // What GET /healthz asks (see http_app.h, App::setHealthCheck). Before start().
  virtual void setHealthCheck(std::function<std::optional<std::string>()> unhealthy) = 0;
  // Adds Prometheus text appended to /metrics. Before start().
  virtual void addMetricsSource(std::function<std::string()> source) = 0;
  // Subscribes to the engine, binds the listeners and starts serving.
  virtual Result<Endpoints> start() = 0;
  // The first half of a graceful stop (Net::drain): no new connection or request; every request
  // already read is answered (a publish is acknowledged or refused, never left unanswered),
  // waiting at most `deadline`; sockets stay open so that bot replies still reach them.
  // True when nothing was left in flight.
  virtual bool drain(std::chrono::milliseconds /*deadline*/) { return true; }
  // Graceful: stop accepting, close sockets (1001), finish in-flight requests, join threads.
  // Idempotent.
  virtual void stop() = 0;
  // The io threads' contexts (one thread each), running from start() until stop(); empty
  // before start(). What else runs work on them (the function runtime's channel readers) must
  // stop using them before stop().
  virtual std::vector<boost::asio::io_context*> ioContexts() const { return {}; }
  // One request answered by the router as if it had arrived on a listener, with no socket: the
  // same routing, authentication and role policy (Toolbelt.LpClient's requests). The request
  // needs method, target (origin form, e.g. "/api/v1/accounts/1/skills?x=1"), lower-case
  // headers and body; segments and query are filled from the target. `done` is called once, on
  // any thread. Thread-safe; before start() or after stop() the answer is 503.
  virtual void handleLocal(HttpRequest request, std::function<void(HttpResponse)> done) = 0;
  // What hands conversation events to this node's protocol sessions (the hub): cluster mode
  // gives it the events of conversations another node holds (app/conversation_relay.h). Its
  // methods may be called on any thread until the server is destroyed; a session that has
  // closed gets nothing. Default: none.
  virtual conversation::ConversationListener* sessionEvents() { return nullptr; }
  // Another node changed a credential of `acc`: forget the tokens of `acc` verified here (the
  // gateway's verified-token cache, Auth::dropCachedCredentials). Thread-safe, never blocks.
  virtual void dropCachedCredentials(const AccountId& /*acc*/) {}
  // Told which conversations this node's protocol sessions watch (server/session_interest.h):
  // cluster mode takes other nodes' events only for those. Before start(); it must outlive
  // stop(). Default: nothing is told.
  virtual void setSessionInterest(SessionInterest* /*interest*/) {}
};

// Prepares TLS material, the JWT key and the user directory (blocking). Does not listen yet.
Result<std::unique_ptr<Server>> makeServer(store::Store& store,
                                           conversation::ConversationService& service,
                                           const Clock& clock, ServerOptions options);

}  // namespace parley::server
