#pragma once

// Plain HTTP and WebSocket values and interfaces between the network layer (net.cpp, the only
// Beast/Asio code) and everything above it (router, auth, REST, messaging protocol), which is
// therefore testable without sockets.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace parley::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw request target, e.g. "/api/v1/accounts/1/skills?x=1"
  // Percent-decoded path segments, e.g. {"api","v1","accounts","1","skills"}.
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;    // decoded query parameters
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
  bool tls = false;
  // "host:port" of the listener the request arrived on, e.g. "127.0.0.1:8443".
  std::string local_host;
  // The client's IP address as the socket sees it (a proxy's address behind a proxy); "" when
  // unknown.
  std::string remote_address;

  // The header value or "" when absent; `name` must be lowercase.
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
  std::string queryParam(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers (e.g. Set-Cookie, Cache-Control).
  std::vector<std::pair<std::string, std::string>> headers;
  // Metrics label of the route that produced this response, e.g. "rest_v1".
  std::string route = "other";
};

// Called exactly once, on any thread; the network layer posts it back to the connection strand.
using HttpDone = std::function<void(HttpResponse)>;

// The network side of one WebSocket connection, as seen by a protocol session. Thread-safe:
// every method may be called from any thread.
class WsTransport {
 public:
  virtual ~WsTransport() = default;
  // Queues one text frame. When the bounded write queue is full the connection is closed with
  // 1008 ("slow consumer"). Ignored after close().
  virtual void send(std::string text) = 0;
  // Sends what is queued, then a close frame with `code` and `reason`.
  virtual void close(int code, std::string reason) = 0;
  // Runs `fn` on the connection's strand (serially with onFrame/onClose).
  virtual void post(std::function<void()> fn) = 0;
  // Runs `fn` on the strand after `delay`, unless the connection closed before.
  virtual void postAfter(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // Bytes queued and not yet taken by the peer, and the most that may be (past it the
  // connection is closed with 1008). On the connection's strand only.
  virtual std::size_t queuedBytes() const { return 0; }
  virtual std::size_t maxQueuedBytes() const { return std::size_t(8) << 20; }
};

// The protocol side of one WebSocket connection. Every method runs on the connection's strand.
class WsHandler {
 public:
  virtual ~WsHandler() = default;
  virtual void onOpen() = 0;
  // One complete text frame (at most the frame limit).
  virtual void onFrame(std::string text) = 0;
  // The connection is gone (closed by either side, failed or shut down). Called once, last.
  virtual void onClose() = 0;
  // The server is draining: refuse requests that arrive from now on (with an answer the
  // client can act on); finish the ones already taken.
  virtual void onDrain() {}
  // Requests taken and not yet answered. Thread-safe (the drain polls it from its thread).
  virtual int requestsInFlight() const { return 0; }
};

// The result of authorising a WebSocket upgrade: either a rejection (sent as a plain HTTP
// response, e.g. 401) or a factory for the handler bound to the accepted connection. The
// connection owns the handler it makes until onClose(); the handler must refer back to the
// transport weakly (a shared_ptr back would be an ownership cycle).
struct UpgradeDecision {
  std::optional<HttpResponse> reject;
  std::function<std::shared_ptr<WsHandler>(std::shared_ptr<WsTransport>)> make;
};

// What the network layer serves. Thread-safe.
class HttpApp {
 public:
  virtual ~HttpApp() = default;
  virtual void handle(HttpRequest request, HttpDone done) = 0;
  // A WebSocket upgrade request; `done` is called exactly once on any thread.
  virtual void upgrade(HttpRequest request, std::function<void(UpgradeDecision)> done) = 0;
};

// Runs blocking work (store calls, file reads) off the io threads. Thread-safe.
class BlockingExecutor {
 public:
  virtual ~BlockingExecutor() = default;
  virtual void run(std::function<void()> work) = 0;
};

// Runs work inline on the caller's thread (tests).
class InlineExecutor final : public BlockingExecutor {
 public:
  // BlockingExecutor
  void run(std::function<void()> work) override { work(); }
};

}  // namespace parley::server
