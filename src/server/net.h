#pragma once

// The network layer: Asio io_contexts on N threads, plain and TLS listeners, HTTP sessions and
// WebSocket sessions. Beast/Asio types stay inside its private rooms (net_state.h, listener,
// http_session, ws_session); callers see only this header. Owned by the Server.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "server/http_types.h"
#include "server/metrics.h"

namespace boost::asio {
class io_context;
}

namespace parley::server {

// A listening socket bound ahead of the Net (bindListenSocket), so that its port is known
// before the rest starts (main names the node after it). Nothing accepts its connections until
// the Net that takes it (NetOptions::http_bound/https_bound) starts: they wait in the backlog.
// Closed on destruction unless taken.
class ListenSocket {
 public:
  ListenSocket(int fd, bool v6, std::string host) : fd_(fd), v6_(v6), host_(std::move(host)) {}
  ~ListenSocket();
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;

  // The address it listens on, "HOST:PORT" ("[v6]:PORT" for IPv6).
  const std::string& host() const { return host_; }
  bool v6() const { return v6_; }
  // The descriptor, now the caller's; -1 once taken.
  int take();

 private:
  int fd_;
  const bool v6_;
  const std::string host_;
};

// Binds and listens on `hostport` ("HOST:PORT"; port 0 picks a free port; "localhost" is
// 127.0.0.1; an empty host is 0.0.0.0; IPv6 hosts in brackets). Invalid for a malformed
// address, Unavailable when the address cannot be bound.
Result<std::shared_ptr<ListenSocket>> bindListenSocket(const std::string& hostport);

struct NetOptions {
  // "HOST:PORT" to listen on for plain HTTP; empty disables it. Port 0 picks a free port.
  std::string http_listen = "127.0.0.1:8080";
  // "HOST:PORT" for HTTPS; empty disables it. REQUIRES: cert/key paths when set.
  std::string https_listen = "127.0.0.1:8443";
  // Sockets already bound (bindListenSocket): listen() takes them instead of binding
  // http_listen / https_listen (which must then be non-empty). Default: none.
  std::shared_ptr<ListenSocket> http_bound;
  std::shared_ptr<ListenSocket> https_bound;
  std::string cert_path;  // PEM chain
  std::string key_path;   // PEM private key
  // io threads. Default: hardware concurrency.
  int threads = 0;
  // Largest REST request body. Default: 1 MiB (bigger → 413).
  std::size_t max_body_bytes = 1 << 20;
  // Largest WebSocket message. Default: 256 KiB (bigger → close 1009).
  std::size_t max_frame_bytes = 256 << 10;
  // Frames queued for one WebSocket before it counts as a slow consumer. Default: 4096.
  std::size_t max_queued_frames = 4096;
  // Bytes queued for one WebSocket (frames waiting plus the write in flight) before it counts
  // as a slow consumer (close 1008). Default: 8 MiB. REQUIRES: > max_frame_bytes.
  std::size_t max_queued_bytes = 8 << 20;
  // Time to receive a whole request header/body. Default: 30 s.
  std::chrono::seconds request_timeout{30};
  // Keep-alive idle time between requests. Default: 60 s.
  std::chrono::seconds keep_alive_timeout{60};
  // WebSocket idle timeout: a connection that has sent nothing (no frame, no pong) for half of it
  // gets a ping; one silent for all of it is closed. Checked every 1/24 of it (5 s for the
  // default), so a ping goes out 0-5 s after half of it and a close 0-5 s after all of it.
  // Default: 120 s. REQUIRES: >= 90 s (clients ping every 60 s).
  std::chrono::seconds ws_idle_timeout{120};
  // Tests only: accept a ws_idle_timeout under 90 s (a test of the idle close cannot wait 90 s).
  bool allow_short_ws_idle_timeout = false;
};

struct BoundPorts {
  std::string http_host;  // "127.0.0.1:P" or "" when disabled
  std::string https_host;
};

class Net {
 public:
  virtual ~Net() = default;
  // Binds the listeners. Invalid/Unavailable with the address when it cannot.
  virtual Result<BoundPorts> listen() = 0;
  // Starts accepting and the io threads.
  virtual void start() = 0;
  // The first half of a graceful stop: closes the listeners, closes HTTP connections waiting
  // between requests (an answer being written goes out with Connection: close), tells every
  // WebSocket handler to refuse new requests (WsHandler::onDrain), and waits until every
  // request already read has been answered, at most `deadline`. Sockets stay open (answers and
  // events still reach them). True when nothing was left in flight.
  virtual bool drain(std::chrono::milliseconds deadline) = 0;
  // Graceful: stops accepting, closes WebSockets with 1001 (after the frames queued before),
  // lets in-flight HTTP requests finish (at most `grace`), then stops the io threads.
  // Idempotent; blocks until they have exited.
  virtual void stop(std::chrono::milliseconds grace) = 0;
  // The io threads' contexts, one per thread (run from start() until stop()).
  virtual std::vector<boost::asio::io_context*> ioContexts() const = 0;
};

// `app` and `metrics` must outlive the Net.
Result<std::unique_ptr<Net>> makeNet(NetOptions options, HttpApp& app, Metrics& metrics);

}  // namespace parley::server
