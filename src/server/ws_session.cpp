#include "server/ws_session.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "server/security_headers.h"
#include "server/write_queue_stream.h"

namespace parley::server::net {
namespace {

namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;

// One accepted WebSocket: the WsTransport its protocol handler talks to, and the read loop
// that feeds the handler. Shared by the coroutine that runs it, its pending handlers and
// timers, and (weakly) the Net's list of live sessions; everything but send/close/post/
// postAfter, the Stoppable calls and queuedBytes runs on the connection's strand.
template <class Stream>
class WsSession final : public WsTransport,
                        public Stoppable,
                        public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(std::shared_ptr<NetState> st, Stream&& stream)
      : st_(std::move(st)), ws_(std::move(stream)), timer_(ws_.get_executor()) {
    // The connection's strand (every accepted socket has one: acceptLoop), kept for onStrand().
    // A copy: target() points into the executor it is called on.
    const auto ex = ws_.get_executor();
    if (const auto* s = ex.template target<Strand>()) strand_ = *s;
  }

  // Before the handshake: the write queue holds the session while a write is in flight.
  void init() {
    out().setOwner(this->weak_from_this());
    out().onWritten([this](beast::error_code ec) { onWritten(ec); });
    heard();
    // Pings, pongs and closes the peer sends count as activity, as its frames do.
    ws_.control_callback([this](websocket::frame_type, beast::string_view) { heard(); });
  }

  websocket::stream<WriteQueueStream<Stream>>& ws() { return ws_; }
  auto executor() { return ws_.get_executor(); }

  void setHandler(std::shared_ptr<WsHandler> h) {
    handler_weak_ = h;
    handler_ = std::move(h);
  }
  WsHandler* handler() { return handler_.get(); }

  // WsTransport
  // On the session's strand (a protocol handler answering), the frame is queued at once: the
  // strand already orders it after everything sent before. From another thread it goes through
  // the inbox, in order with that thread's posts and closes.
  void send(std::string text) override {
    if (onStrand()) {
      if (!close_requested_) enqueue(std::move(text));
      return;
    }
    toInbox([this, t = std::move(text)]() mutable { enqueue(std::move(t)); });
  }
  void close(int code, std::string reason) override {
    if (onStrand()) close_requested_ = true;  // later sends: ignored
    toInbox([this, code, r = std::move(reason)]() mutable { requestClose(code, std::move(r)); });
  }
  void post(std::function<void()> fn) override { toInbox(std::move(fn)); }
  std::size_t queuedBytes() const override { return queued_bytes_ + out().queuedBytes(); }
  std::size_t maxQueuedBytes() const override { return st_->opts.max_queued_bytes; }
  void postAfter(std::chrono::milliseconds delay, std::function<void()> fn) override {
    auto t = std::make_shared<asio::steady_timer>(executor(), delay);
    t->async_wait([self = this->shared_from_this(), t, fn = std::move(fn)](auto ec) {
      if (!ec && !self->finished_) fn();
    });
    asio::post(executor(), [self = this->shared_from_this(), t] {
      if (self->finished_) {
        t->cancel();
      } else {
        self->timers_.push_back(t);
      }
    });
  }

  // Stoppable
  void shutdown() override {
    asio::post(executor(), [self = this->shared_from_this()] {
      self->requestClose(static_cast<int>(websocket::close_code::going_away),
                         "server shutting down");
    });
  }
  void drain() override {
    toInbox([this] {
      if (handler_) handler_->onDrain();
    });
  }
  bool drainBusy() const override {
    auto h = handler_weak_.lock();
    return h && h->requestsInFlight() > 0;
  }
  // From the sweep: only a connection silent long enough gets a handler posted, and only once
  // per silence for its ping. The strand checks again (a frame may have arrived meanwhile).
  void checkIdle(std::uint32_t tick) override {
    const std::uint32_t last = last_heard_.load(std::memory_order_relaxed);
    const std::uint32_t silent = tick - last;
    if (silent >= kCloseAfterTicks) {
      asio::post(executor(), [self = this->shared_from_this(), tick] {
        if (self->finished_ ||
            tick - self->last_heard_.load(std::memory_order_relaxed) < kCloseAfterTicks)
          return;
        spdlog::debug("websocket closed: idle for {} s", self->st_->opts.ws_idle_timeout.count());
        self->st_->metrics.countIdleClose();
        self->queue_.clear();
        beast::error_code ignore;
        beast::get_lowest_layer(self->ws_).socket().close(ignore);
      });
    } else if (silent >= kPingAfterTicks && pinged_after_.exchange(last) != last) {
      asio::post(executor(), [self = this->shared_from_this()] {
        if (self->finished_ || self->closing_ || self->ping_in_flight_) return;
        self->ping_in_flight_ = true;
        self->st_->metrics.countIdlePing();
        self->ws_.async_ping({}, [self](beast::error_code) { self->ping_in_flight_ = false; });
      });
    }
  }

  // Runs the read loop until the connection ends. On the strand.
  awaitable<void> run() {
    auto self = this->shared_from_this();
    st_->metrics.socketOpened(SocketKind::kWebSocket);
    handler_->onOpen();
    beast::flat_buffer buf;  // kept: its storage is reused by every frame
    for (;;) {
      buf.consume(buf.size());
      if (buf.capacity() > 64 * 1024) buf.shrink_to_fit();  // a big frame's space is not kept
      auto [ec, n] = co_await ws_.async_read(buf, kTuple);
      if (ec) {
        if (ec == websocket::error::message_too_big) {
          st_->metrics.countOversizedFrame();
          spdlog::warn("websocket closed: frame larger than {} bytes (close 1009)",
                       st_->opts.max_frame_bytes);
        } else if (ec != websocket::error::closed && ec != asio::error::operation_aborted &&
                   ec != asio::error::eof) {
          spdlog::debug("websocket read ended: {}", ec.message());
        }
        break;
      }
      heard();
      st_->metrics.countFrameIn();
      if (!ws_.got_text()) {
        enqueue(
            R"({"kind":"resp","code":400,"type":"error.BinaryFrame","body":{"message":"binary frames are not supported: send one JSON object per text frame"}})");
        continue;
      }
      if (closing_) continue;
      handler_->onFrame(beast::buffers_to_string(buf.data()));
    }
    finished_ = true;
    for (auto& t : timers_) t->cancel();
    timers_.clear();
    queue_.clear();
    handler_->onClose();
    handler_.reset();
    st_->metrics.socketClosed(SocketKind::kWebSocket);
  }

 private:
  WriteQueueStream<Stream>& out() { return ws_.next_layer(); }
  const WriteQueueStream<Stream>& out() const { return ws_.next_layer(); }

  // True on this connection's strand.
  bool onStrand() const { return strand_ && strand_->running_in_this_thread(); }

  // The inbox: what other threads (and the strand itself) post, run by one strand handler for
  // all that arrived before it ran. The engine's completions come in pairs and threes (a
  // publish's notification and its response; a message for several sessions), and each used to
  // be its own strand handler plus one more to write what they had queued; now one handler runs
  // them and writes their frames (`drainInbox`).
  void toInbox(std::function<void()> fn) {
    bool schedule = false;
    {
      MutexLock lock(inbox_mu_);
      inbox_.push_back(std::move(fn));
      schedule = !drain_scheduled_;
      drain_scheduled_ = true;
    }
    if (schedule) asio::post(executor(), [self = this->shared_from_this()] { self->drainInbox(); });
  }

  // On the strand: runs what the inbox holds (not what arrives meanwhile: that gets its own
  // handler, behind the ones already queued on the strand), then writes the frames they queued.
  void drainInbox() {
    std::vector<std::function<void()>> batch;
    {
      MutexLock lock(inbox_mu_);
      batch.swap(inbox_);
    }
    draining_ = true;
    for (auto& fn : batch)
      if (!finished_) fn();
    draining_ = false;
    batch.clear();
    if (write_wanted_) {
      write_wanted_ = false;
      if (!finished_ && !closing_) writeQueued();
    }
    bool again = false;
    {
      MutexLock lock(inbox_mu_);
      again = !inbox_.empty();
      drain_scheduled_ = again;
    }
    if (again) asio::post(executor(), [self = this->shared_from_this()] { self->drainInbox(); });
  }

  // Notes that the peer sent something (for the idle sweep).
  void heard() {
    last_heard_.store(st_->idle_tick.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

  void enqueue(std::string text) {
    if (finished_ || closing_) return;
    const std::size_t bytes = queued_bytes_ + out().queuedBytes() + text.size();
    if (queue_.size() >= st_->opts.max_queued_frames || bytes > st_->opts.max_queued_bytes) {
      st_->metrics.countSlowConsumerClose();
      spdlog::warn("websocket closed: slow consumer ({} frames, {} bytes queued)", queue_.size(),
                   bytes);
      queue_.clear();
      queued_bytes_ = 0;
      forceClose(static_cast<int>(websocket::close_code::policy_error),
                 "slow consumer: write queue full");
      return;
    }
    queued_bytes_ += text.size();
    queue_.push_back(std::move(text));
    // Inside the inbox's handler: written when it has run everything it took.
    if (draining_) {
      write_wanted_ = true;
      return;
    }
    // Otherwise after the handlers already queued on this strand have run, so the frames of one
    // burst leave in one write.
    if (!write_posted_) {
      write_posted_ = true;
      asio::post(executor(), [self = this->shared_from_this()] {
        self->write_posted_ = false;
        if (!self->finished_ && !self->closing_) self->writeQueued();
      });
    }
  }

  // Hands every queued frame to the write queue as one write, unless a write is in flight: then
  // they wait for it (onWritten), so `queue_` holds exactly the frames the peer has not taken.
  void writeQueued() {
    if (out().writing() || queue_.empty()) return;
    handOver();
    out().flush();
  }

  // Moves the queued frames into the write queue (written after anything already in it).
  void handOver() {
    for (const auto& frame : queue_) {
      out().appendTextFrame(frame);
      st_->metrics.countFrameOut();
    }
    queue_.clear();
    queued_bytes_ = 0;
  }

  void onWritten(beast::error_code ec) {
    if (ec) {
      queue_.clear();
      queued_bytes_ = 0;
      return;
    }
    if (!finished_ && !closing_) writeQueued();
  }

  // The close frame goes through the same write queue, after every frame queued before it.
  void requestClose(int code, std::string reason) {
    if (finished_ || closing_) return;
    close_code_ = code;
    close_reason_ = std::move(reason);
    // Frames still waiting (also behind a write in flight) go before the close.
    handOver();
    out().flush();
    doClose();
  }

  void forceClose(int code, std::string reason) {
    if (finished_ || closing_) return;
    close_code_ = code;
    close_reason_ = std::move(reason);
    doClose();
    // If the peer does not read, the close handshake cannot finish: cut the socket.
    auto t = std::make_shared<asio::steady_timer>(executor(), std::chrono::seconds(5));
    t->async_wait([self = this->shared_from_this(), t](auto ec) {
      if (!ec && !self->finished_) beast::get_lowest_layer(self->ws_).close();
    });
  }

  void doClose() {
    if (closing_) return;
    closing_ = true;
    websocket::close_reason cr;
    cr.code = static_cast<std::uint16_t>(close_code_);
    cr.reason = close_reason_;
    ws_.async_close(cr, [self = this->shared_from_this()](beast::error_code) {});
  }

  using Strand = asio::strand<asio::io_context::executor_type>;

  std::shared_ptr<NetState> st_;
  websocket::stream<WriteQueueStream<Stream>> ws_;
  asio::steady_timer timer_;
  std::optional<Strand> strand_;
  std::shared_ptr<WsHandler> handler_;
  // Set once before the session is tracked, never reassigned: the drain reads it from its own
  // thread (handler_ itself is reset on the strand at the close).
  std::weak_ptr<WsHandler> handler_weak_;
  std::deque<std::string> queue_;
  std::size_t queued_bytes_ = 0;  // text bytes in queue_ (strand)
  std::vector<std::shared_ptr<asio::steady_timer>> timers_;
  // Idle sweep tick of the last frame received; the `last_heard_` a ping was posted for.
  std::atomic<std::uint32_t> last_heard_{0};
  std::atomic<std::uint32_t> pinged_after_{~0u};
  bool ping_in_flight_ = false;  // an async_ping is outstanding (Beast allows one)
  Mutex inbox_mu_;
  std::vector<std::function<void()>> inbox_ PARLEY_GUARDED_BY(inbox_mu_);
  bool drain_scheduled_ PARLEY_GUARDED_BY(inbox_mu_) = false;  // a drainInbox is posted
  bool draining_ = false;                                      // in drainInbox (strand)
  bool write_wanted_ = false;     // drainInbox writes when done (strand)
  bool write_posted_ = false;     // a writeQueued is posted (enqueue)
  bool close_requested_ = false;  // close() was called on the strand (its requestClose is posted)
  bool closing_ = false;
  bool finished_ = false;
  int close_code_ = 1000;
  std::string close_reason_;
};

template <class Stream>
awaitable<void> runOn(std::shared_ptr<NetState> st, Stream stream,
                      http::request<http::string_body> req, WsHandlerFactory make) {
  constexpr Transport kTransport =
      std::is_same_v<Stream, TlsStream> ? Transport::kTls : Transport::kPlain;
  beast::get_lowest_layer(stream).expires_never();
  auto ws = std::make_shared<WsSession<Stream>>(st, std::move(stream));
  ws->init();
  auto& w = ws->ws();
  // Beast times the handshake and the close; idleness is the idle sweep's (kIdleTicks).
  websocket::stream_base::timeout to{};
  to.handshake_timeout = std::chrono::seconds(30);
  to.idle_timeout = websocket::stream_base::none();
  to.keep_alive_pings = false;
  w.set_option(to);
  w.read_message_max(st->opts.max_frame_bytes);
  w.auto_fragment(false);
  // Never send Sec-WebSocket-Protocol: ws 1.x rejects a subprotocol it did not ask for.
  w.set_option(websocket::stream_base::decorator(
      [host = std::string(req[http::field::host])](websocket::response_type& res) {
        res.set(http::field::server, "parley");
        for (const auto& [k, v] : securityHeaders(host, kTransport)) res.set(k, v);
      }));
  auto [ec] = co_await w.async_accept(req, kTuple);
  if (ec) {
    spdlog::debug("websocket accept failed: {}", ec.message());
    co_return;
  }
  ws->setHandler(make(ws));
  auto id = st->track(ws);
  if (st->draining) ws->drain();
  if (st->stopping) ws->shutdown();
  co_await ws->run();
  st->untrack(id);
}

}  // namespace

awaitable<void> runWebSocket(std::shared_ptr<NetState> st, PlainStream stream,
                             http::request<http::string_body> req, WsHandlerFactory make) {
  return runOn(std::move(st), std::move(stream), std::move(req), std::move(make));
}

awaitable<void> runWebSocket(std::shared_ptr<NetState> st, TlsStream stream,
                             http::request<http::string_body> req, WsHandlerFactory make) {
  return runOn(std::move(st), std::move(stream), std::move(req), std::move(make));
}

}  // namespace parley::server::net
