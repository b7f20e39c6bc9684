#include "server/net.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/thread_name.h"
#include "server/listener.h"
#include "server/net_state.h"
#include "server/security_headers.h"

namespace parley::server {
namespace {

using net::Listener;
using net::NetState;
namespace asio = net::asio;
namespace ssl = net::ssl;

// The Net: one io_context per io thread, the listeners, the idle sweep, and drain/stop over the
// sessions NetState tracks. Owned by the Server; its methods are called from one thread (the
// Server's), never from an io thread.
class NetImpl final : public Net {
 public:
  NetImpl(NetOptions o, HttpApp& app, Metrics& m)
      : extra_iocs_(makeExtraContexts(ioThreads(o.threads) - 1)),
        ioc_(1),
        st_(std::make_shared<NetState>(ioc_, std::move(o), app, m)) {
    st_->conn_iocs.push_back(&ioc_);
    for (auto& c : extra_iocs_) st_->conn_iocs.push_back(c.get());
  }
  ~NetImpl() override { stop(std::chrono::milliseconds(2000)); }

  Status configureTls() {
    if (st_->opts.https_listen.empty()) return {};
    boost::system::error_code ec;
    st_->ssl_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                             ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    st_->ssl_ctx.use_certificate_chain_file(st_->opts.cert_path, ec);
    if (ec)
      return invalid(
          fmt::format("cannot load TLS certificate {}: {}", st_->opts.cert_path, ec.message()));
    st_->ssl_ctx.use_private_key_file(st_->opts.key_path, ssl::context::pem, ec);
    if (ec)
      return invalid(fmt::format("cannot load TLS key {}: {}", st_->opts.key_path, ec.message()));
    return {};
  }

  // Net
  Result<BoundPorts> listen() override {
    BoundPorts out;
    if (!st_->opts.http_listen.empty()) {
      auto l = st_->opts.http_bound ? Listener::adopt(st_, *st_->opts.http_bound, Transport::kPlain)
                                    : Listener::bind(st_, st_->opts.http_listen, Transport::kPlain);
      if (!l) return std::unexpected(l.error());
      http_listener_ = std::move(*l);
      out.http_host = http_listener_->host();
    }
    if (!st_->opts.https_listen.empty()) {
      auto l = st_->opts.https_bound ? Listener::adopt(st_, *st_->opts.https_bound, Transport::kTls)
                                     : Listener::bind(st_, st_->opts.https_listen, Transport::kTls);
      if (!l) return std::unexpected(l.error());
      https_listener_ = std::move(*l);
      out.https_host = https_listener_->host();
    }
    return out;
  }

  void start() override {
    if (http_listener_) http_listener_->start();
    if (https_listener_) https_listener_->start();
    sweepIdle();
    for (asio::io_context* ctx : st_->conn_iocs) {
      work_.emplace_back(asio::make_work_guard(*ctx));
      threads_.emplace_back([ctx] {
        nameThisThread("net-io");
        for (;;) {
          try {
            ctx->run();
            break;
          } catch (const std::exception& e) {
            spdlog::error("io thread: unexpected exception: {}", e.what());
          }
        }
      });
    }
  }

  bool drain(std::chrono::milliseconds deadline) override {
    if (threads_.empty()) return true;
    st_->draining = true;
    asio::post(st_->ioc, [this] { closeListeners(); });
    for (auto& s : st_->snapshot()) s->drain();
    auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      bool busy = false;
      for (auto& s : st_->snapshot()) busy = busy || s->drainBusy();
      if (!busy) return true;
      if (std::chrono::steady_clock::now() >= end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void stop(std::chrono::milliseconds grace) override {
    if (threads_.empty()) return;
    st_->stopping = true;
    asio::post(st_->ioc, [this] {
      closeListeners();
      idle_timer_.cancel();
    });
    for (auto& s : st_->snapshot()) s->shutdown();
    auto deadline = std::chrono::steady_clock::now() + grace;
    while (st_->liveCount() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      for (auto& s : st_->snapshot()) s->shutdown();
    }
    work_.clear();
    for (asio::io_context* ctx : st_->conn_iocs) ctx->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  std::vector<asio::io_context*> ioContexts() const override { return st_->conn_iocs; }

 private:
  // On the first context's thread.
  void closeListeners() {
    if (http_listener_) http_listener_->close();
    if (https_listener_) https_listener_->close();
  }

  // Every ws_idle_timeout / kIdleTicks: the next tick, and each connection checks its silence.
  // On an io thread (the timer's); a connection with something to do posts to its own strand.
  void sweepIdle() {
    const auto period =
        std::chrono::duration_cast<std::chrono::milliseconds>(st_->opts.ws_idle_timeout) /
        net::kIdleTicks;
    idle_timer_.expires_after(period);
    idle_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || st_->stopping) return;
      const std::uint32_t tick = st_->idle_tick.fetch_add(1, std::memory_order_relaxed) + 1;
      for (auto& s : st_->snapshot()) s->checkIdle(tick);
      sweepIdle();
    });
  }

  // `--threads`, with 0 meaning one per core.
  static int ioThreads(int configured) {
    return configured > 0 ? configured
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }

  static std::vector<std::unique_ptr<asio::io_context>> makeExtraContexts(int n) {
    std::vector<std::unique_ptr<asio::io_context>> v;
    for (int i = 0; i < n; ++i) v.push_back(std::make_unique<asio::io_context>(1));
    return v;
  }

  // One io_context per io thread, each told it has one thread (handlers it posts to itself
  // then skip the scheduler's lock, and no two threads share a scheduler or an epoll set).
  // The contexts of the other io threads are declared first, so destroyed after ioc_: what
  // ioc_ still holds when it goes (a cancelled accept's new socket) may belong to one of them,
  // never the other way round.
  std::vector<std::unique_ptr<asio::io_context>> extra_iocs_;
  // Declared before the rest: destroyed after the acceptors and the Net's share of the state.
  asio::io_context ioc_;
  std::shared_ptr<NetState> st_;
  std::unique_ptr<Listener> http_listener_;
  std::unique_ptr<Listener> https_listener_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  asio::steady_timer idle_timer_{asio::make_strand(ioc_)};
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::unique_ptr<Net>> makeNet(NetOptions options, HttpApp& app, Metrics& metrics) {
  if (options.ws_idle_timeout < std::chrono::seconds(90) && !options.allow_short_ws_idle_timeout)
    return invalid("the WebSocket idle timeout must be at least 90 s (clients ping every 60 s)");
  if (options.ws_idle_timeout < std::chrono::seconds(1))
    return invalid("the WebSocket idle timeout must be at least 1 s");
  auto n = std::make_unique<NetImpl>(std::move(options), app, metrics);
  if (auto s = n->configureTls(); !s) return std::unexpected(s.error());
  return std::unique_ptr<Net>(std::move(n));
}

}  // namespace parley::server
