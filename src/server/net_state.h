#pragma once

// What the network layer's rooms share (private to server/: the listener, the HTTP and
// WebSocket sessions and the Net): the Asio/Beast aliases, the stream types, the state every
// session holds (NetState) and the Stoppable seam through which the Net drains, stops and
// sweeps them.

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/thread_annotations.h"
#include "server/http_types.h"
#include "server/metrics.h"
#include "server/net.h"

namespace parley::server::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// Completion token of expected network errors: (error_code, ...) instead of a throw.
inline constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Logs an exception that ended a coroutine (`where` names it); nothing when `e` is null.
void logException(std::exception_ptr e, const char* where);

// Something the shutdown can stop: posts to its strand.
struct Stoppable {
  virtual ~Stoppable() = default;
  virtual void shutdown() = 0;
  // The drain (Net::drain): take no new request; an HTTP connection between requests closes.
  virtual void drain() {}
  // Whether a request already read is still being answered. Any thread.
  virtual bool drainBusy() const { return false; }
  // The idle sweep's tick `tick` (see NetState::idle_tick); from the sweep's thread. HTTP
  // sessions have their own timeouts.
  virtual void checkIdle(std::uint32_t /*tick*/) {}
};

// WebSocket idle handling, in ticks of the idle sweep (Net::sweepIdle in net.cpp), which runs every
// ws_idle_timeout / kIdleTicks. Beast's own idle timeout re-arms a timer on every frame read —
// a timer cancel, a cancelled wait to run and a new wait per frame, ~3 % of the CPU of a bot
// turn — so connections only note the tick of their last frame and one sweep looks at them all.
// A ping goes out after more than half the timeout of silence and the close after more than the
// whole of it (one tick more than the threshold: the last frame may have come just before a
// tick, so a threshold of N ticks could mean only N-1 periods of silence).
inline constexpr std::uint32_t kIdleTicks = 24;
inline constexpr std::uint32_t kPingAfterTicks = kIdleTicks / 2 + 1;
inline constexpr std::uint32_t kCloseAfterTicks = kIdleTicks + 1;

// Shared by the Net and every session. The io_context itself is owned by the Net (not by this
// state), so destroying the Net destroys the handlers still queued in it, which releases the
// sessions they hold, which release this state: no ownership cycle survives shutdown.
struct NetState {
  explicit NetState(asio::io_context& io, NetOptions o, HttpApp& a, Metrics& m)
      : opts(std::move(o)), app(a), metrics(m), ioc(io), ssl_ctx(ssl::context::tls_server) {}

  NetOptions opts;
  HttpApp& app;
  Metrics& metrics;
  // The first io thread's context: acceptors, the idle sweep's timer, connections.
  asio::io_context& ioc;
  // Every io thread's context (`ioc` first), one thread each; accepted connections are dealt
  // out round-robin and stay on theirs. Set before start(); read-only after.
  std::vector<asio::io_context*> conn_iocs;
  std::atomic<std::size_t> next_conn{0};
  asio::io_context& connectionContext() {
    return *conn_iocs[next_conn.fetch_add(1, std::memory_order_relaxed) % conn_iocs.size()];
  }
  ssl::context ssl_ctx;
  std::atomic<bool> stopping{false};
  // Net::drain has begun: no new connection, no new request.
  std::atomic<bool> draining{false};

  // Ticks of the idle sweep so far (connections note it at each frame they receive).
  std::atomic<std::uint32_t> idle_tick{0};

  Mutex mu;
  std::uint64_t next_id PARLEY_GUARDED_BY(mu) = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<Stoppable>> live PARLEY_GUARDED_BY(mu);

  std::uint64_t track(std::weak_ptr<Stoppable> s) {
    MutexLock lock(mu);
    auto id = next_id++;
    live.emplace(id, std::move(s));
    return id;
  }
  void untrack(std::uint64_t id) {
    MutexLock lock(mu);
    live.erase(id);
  }
  std::vector<std::shared_ptr<Stoppable>> snapshot() {
    MutexLock lock(mu);
    std::vector<std::shared_ptr<Stoppable>> out;
    for (auto& [id, w] : live)
      if (auto s = w.lock()) out.push_back(std::move(s));
    return out;
  }
  std::size_t liveCount() {
    MutexLock lock(mu);
    return live.size();
  }
};

}  // namespace parley::server::net
