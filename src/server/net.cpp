#include "server/net.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/url.hpp>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/thread_name.h"
#include "server/security_headers.h"
#include "server/write_queue_stream.h"

namespace parley::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kDrainLimit = 16 << 20;

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// ---------------------------------------------------------------------------------------------
// Helpers

Result<tcp::endpoint> parseEndpoint(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos)
    return invalid(fmt::format("listen address '{}' must be HOST:PORT", hostport));
  std::string host = hostport.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty()) host = "0.0.0.0";
  int port = 0;
  try {
    port = std::stoi(hostport.substr(colon + 1));
  } catch (...) {
    return invalid(fmt::format("listen address '{}': the port is not a number", hostport));
  }
  if (port < 0 || port > 65535)
    return invalid(fmt::format("listen address '{}': port out of range", hostport));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return invalid(fmt::format("listen address '{}': '{}' is not an IP address", hostport, host));
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

std::string hostString(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6()) return fmt::format("[{}]:{}", a.to_string(), ep.port());
  return fmt::format("{}:{}", a.to_string(), ep.port());
}

std::string jsonError(std::string_view code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  out += code;
  out += R"(","message":")";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  out += "\"}}";
  return out;
}

// The peer's IP address as text ("" when the socket has none, e.g. already closed).
std::string peerAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return {};
  return ep.address().to_string();
}

HttpRequest toPlain(const http::request<http::string_body>& req, bool tls,
                    const std::string& local_host) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  out.tls = tls;
  out.local_host = local_host;
  for (const auto& f : req) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.body = req.body();
  auto u = boost::urls::parse_origin_form(out.target);
  if (u) {
    for (auto seg : u->segments()) out.segments.emplace_back(seg);
    for (auto p : u->params()) out.query[std::string(p.key)] = std::string(p.value);
  } else {
    std::string path = out.target.substr(0, out.target.find('?'));
    std::size_t i = 0;
    while (i < path.size()) {
      auto j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      if (j > i) out.segments.push_back(path.substr(i, j - i));
      i = j + 1;
    }
  }
  return out;
}

// The answer to a HEAD request: the headers the GET answer would have (its Content-Length
// included), no body.
http::response<http::empty_body> toBeastHead(const HttpResponse& r, unsigned version,
                                             bool keep_alive, std::string_view host,
                                             Transport transport) {
  http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "parley");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.insert(k, v);
  for (const auto& [k, v] : securityHeaders(host, transport)) res.set(k, v);
  res.keep_alive(keep_alive);
  res.content_length(r.body.size());
  return res;
}

// Every response leaves through here (or, for an accepted WebSocket, the handshake decorator):
// the security headers are set last, so no route can drop or weaken them.
http::response<http::string_body> toBeast(const HttpResponse& r, unsigned version, bool keep_alive,
                                          std::string_view host, Transport transport) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "parley");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.insert(k, v);
  for (const auto& [k, v] : securityHeaders(host, transport)) res.set(k, v);
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// Bridges a callback-style API to a coroutine: `start(cb)` must call cb(T) exactly once on any
// thread; the awaiting coroutine resumes on `ex` (its strand). Deliberately not a coroutine
// itself: GCC 12 mishandles lambda arguments of coroutines (the captures were freed twice).
template <class T, class Executor, class Start>
auto awaitCallback(Executor ex, Start start) {
  return asio::async_initiate<decltype(use_awaitable), void(T)>(
      [ex, start = std::move(start)](auto handler) mutable {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        start([ex, h](T value) mutable {
          asio::post(ex, [h, v = std::move(value)]() mutable { (*h)(std::move(v)); });
        });
      },
      use_awaitable);
}

// ---------------------------------------------------------------------------------------------
// Shared state

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

// WebSocket idle handling, in ticks of the idle sweep (NetImpl::sweepIdle), which runs every
// ws_idle_timeout / kIdleTicks. Beast's own idle timeout re-arms a timer on every frame read —
// a timer cancel, a cancelled wait to run and a new wait per frame, ~3 % of the CPU of a bot
// turn — so connections only note the tick of their last frame and one sweep looks at them all.
// A ping goes out after more than half the timeout of silence and the close after more than the
// whole of it (one tick more than the threshold: the last frame may have come just before a
// tick, so a threshold of N ticks could mean only N-1 periods of silence).
constexpr std::uint32_t kIdleTicks = 24;
constexpr std::uint32_t kPingAfterTicks = kIdleTicks / 2 + 1;
constexpr std::uint32_t kCloseAfterTicks = kIdleTicks + 1;

// Shared by the Net and every session. The io_context itself is owned by NetImpl (not by this
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

  std::mutex mu;
  std::uint64_t next_id = 1;                                         // GUARDED_BY(mu)
  std::unordered_map<std::uint64_t, std::weak_ptr<Stoppable>> live;  // GUARDED_BY(mu)

  std::uint64_t track(std::weak_ptr<Stoppable> s) {
    std::lock_guard lock(mu);
    auto id = next_id++;
    live.emplace(id, std::move(s));
    return id;
  }
  void untrack(std::uint64_t id) {
    std::lock_guard lock(mu);
    live.erase(id);
  }
  std::vector<std::shared_ptr<Stoppable>> snapshot() {
    std::lock_guard lock(mu);
    std::vector<std::shared_ptr<Stoppable>> out;
    for (auto& [id, w] : live)
      if (auto s = w.lock()) out.push_back(std::move(s));
    return out;
  }
  std::size_t liveCount() {
    std::lock_guard lock(mu);
    return live.size();
  }
};

// ---------------------------------------------------------------------------------------------
// WebSocket session

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
    st_->metrics.socketOpened(true);
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
    st_->metrics.socketClosed(true);
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
      std::lock_guard lock(inbox_mu_);
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
      std::lock_guard lock(inbox_mu_);
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
      std::lock_guard lock(inbox_mu_);
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
  std::mutex inbox_mu_;
  std::vector<std::function<void()>> inbox_;  // GUARDED_BY(inbox_mu_)
  bool drain_scheduled_ = false;              // GUARDED_BY(inbox_mu_): a drainInbox is posted
  bool draining_ = false;                     // in drainInbox (strand)
  bool write_wanted_ = false;                 // drainInbox writes when done (strand)
  bool write_posted_ = false;                 // a writeQueued is posted (enqueue)
  bool close_requested_ = false;  // close() was called on the strand (its requestClose is posted)
  bool closing_ = false;
  bool finished_ = false;
  int close_code_ = 1000;
  std::string close_reason_;
};

// ---------------------------------------------------------------------------------------------
// HTTP session

template <class Stream>
class HttpSession final : public Stoppable,
                          public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(std::shared_ptr<NetState> st, Stream&& stream, bool tls, std::string local_host)
      : st_(std::move(st)),
        stream_(std::move(stream)),
        executor_(beast::get_lowest_layer(stream_).get_executor()),
        tls_(tls),
        local_host_(std::move(local_host)),
        remote_address_(peerAddress(beast::get_lowest_layer(stream_).socket())) {}

  // Stoppable. Called from any thread, also after an upgrade moved `stream_` into the WebSocket
  // session (a moved-from ssl_stream has no executor): uses the executor kept at construction.
  void shutdown() override {
    asio::post(executor_, [self = this->shared_from_this()] {
      if (!self->busy_ && !self->upgraded_) beast::get_lowest_layer(self->stream_).cancel();
    });
  }
  // Between requests (waiting for the next header on a keep-alive connection) the connection
  // closes; a request being answered finishes, with Connection: close.
  void drain() override { shutdown(); }
  bool drainBusy() const override { return busy_ && !upgraded_; }

  awaitable<void> run() {
    auto self = this->shared_from_this();
    st_->metrics.socketOpened(false);
    co_await serve();
    st_->metrics.socketClosed(false);
  }

 private:
  awaitable<void> serve() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      beast::get_lowest_layer(stream_).expires_after(st_->opts.request_timeout);
      auto [ec] = co_await stream_.async_handshake(ssl::stream_base::server, kTuple);
      if (ec) {
        spdlog::debug("tls handshake failed: {}", ec.message());
        co_return;
      }
    }
    beast::flat_buffer buf;
    bool first = true;
    for (;;) {
      if (st_->stopping || st_->draining) break;
      http::request_parser<http::string_body> parser;
      // Bodies up to kDrainLimit are read (and dropped when over the limit) so the client gets
      // a clean 413 instead of a reset connection.
      parser.body_limit(std::max<std::size_t>(st_->opts.max_body_bytes, kDrainLimit));
      parser.header_limit(16 * 1024);
      beast::get_lowest_layer(stream_).expires_after(first ? st_->opts.request_timeout
                                                           : st_->opts.keep_alive_timeout);
      first = false;
      auto [ec, n] = co_await http::async_read_header(stream_, buf, parser, kTuple);
      host_ = std::string(parser.get()[http::field::host]);
      if (!ec) {
        busy_ = true;
        beast::get_lowest_layer(stream_).expires_after(st_->opts.request_timeout);
        if (!parser.is_done())
          std::tie(ec, n) = co_await http::async_read(stream_, buf, parser, kTuple);
      }
      bool too_large = ec == http::error::body_limit ||
                       (!ec && parser.get().body().size() > st_->opts.max_body_bytes);
      if (too_large) {
        HttpResponse r{413,
                       "application/json",
                       jsonError("TOO_LARGE", fmt::format("the request body exceeds {} bytes",
                                                          st_->opts.max_body_bytes)),
                       {},
                       "too_large"};
        st_->metrics.countRequest(r.route, r.status);
        co_await write(r, 11, false);
        break;
      }
      if (ec == http::error::header_limit) {
        HttpResponse r{431,
                       "application/json",
                       jsonError("TOO_LARGE", "the request headers are too large"),
                       {},
                       "too_large"};
        co_await write(r, 11, false);
        break;
      }
      if (ec) {
        if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
            ec != beast::error::timeout && ec != asio::error::eof)
          spdlog::debug("http read ended: {}", ec.message());
        if (busy_ && ec != beast::error::timeout && ec != asio::error::eof &&
            ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
            ec != asio::ssl::error::stream_truncated) {
          HttpResponse r{400,
                         "application/json",
                         jsonError("INVALID", "malformed HTTP request: " + ec.message()),
                         {},
                         "bad_request"};
          co_await write(r, 11, false);
        }
        break;
      }
      http::request<http::string_body> req = parser.release();
      if (websocket::is_upgrade(req)) {
        upgraded_ = true;
        co_await upgrade(std::move(req));
        co_return;
      }
      auto plain = std::make_shared<HttpRequest>(toPlain(req, tls_, local_host_));
      plain->remote_address = remote_address_;
      // HEAD is answered as GET would be, without the body (RFC 9110 §9.3.2) — on every route.
      const bool head = req.method() == http::verb::head;
      if (head) plain->method = "GET";
      auto start = [st = st_, plain](std::function<void(HttpResponse)> cb) {
        st->app.handle(std::move(*plain), std::move(cb));
      };
      HttpResponse res = co_await awaitCallback<HttpResponse>(
          beast::get_lowest_layer(stream_).get_executor(), std::move(start));
      st_->metrics.countRequest(res.route, res.status);
      // Draining: this answer is the connection's last (Connection: close).
      bool keep = req.keep_alive() && !st_->stopping && !st_->draining;
      bool ok = head ? co_await writeHead(res, req.version(), keep)
                     : co_await write(res, req.version(), keep);
      busy_ = false;
      if (!ok || !keep) break;
    }
    co_await closeStream();
  }

  awaitable<bool> write(const HttpResponse& r, unsigned version, bool keep_alive) {
    auto res = toBeast(r, version, keep_alive, host_, tls_ ? Transport::kTls : Transport::kPlain);
    beast::get_lowest_layer(stream_).expires_after(st_->opts.request_timeout);
    auto [ec, n] = co_await http::async_write(stream_, res, kTuple);
    co_return !ec;
  }

  awaitable<bool> writeHead(const HttpResponse& r, unsigned version, bool keep_alive) {
    auto res =
        toBeastHead(r, version, keep_alive, host_, tls_ ? Transport::kTls : Transport::kPlain);
    beast::get_lowest_layer(stream_).expires_after(st_->opts.request_timeout);
    http::serializer<false, http::empty_body> sr{res};
    auto [ec, n] = co_await http::async_write_header(stream_, sr, kTuple);
    co_return !ec;
  }

  awaitable<void> closeStream() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      co_await stream_.async_shutdown(kTuple);
    } else {
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  awaitable<void> upgrade(http::request<http::string_body> req) {
    auto plain = std::make_shared<HttpRequest>(toPlain(req, tls_, local_host_));
    plain->remote_address = remote_address_;
    auto start = [st = st_, plain](std::function<void(UpgradeDecision)> cb) {
      st->app.upgrade(std::move(*plain), std::move(cb));
    };
    UpgradeDecision d = co_await awaitCallback<UpgradeDecision>(
        beast::get_lowest_layer(stream_).get_executor(), std::move(start));
    if (d.reject || !d.make) {
      HttpResponse r = d.reject ? *d.reject
                                : HttpResponse{500,
                                               "application/json",
                                               jsonError("INTERNAL", "upgrade not handled"),
                                               {},
                                               "ws"};
      st_->metrics.countRequest(r.route, r.status);
      co_await write(r, req.version(), false);
      co_await closeStream();
      co_return;
    }
    st_->metrics.countRequest("ws_upgrade", 101);
    beast::get_lowest_layer(stream_).expires_never();
    auto ws = std::make_shared<WsSession<Stream>>(st_, std::move(stream_));
    ws->init();
    auto& w = ws->ws();
    // Beast times the handshake and the close; idleness is the idle sweep's (kIdleTicks).
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::seconds(30);
    to.idle_timeout = websocket::stream_base::none();
    to.keep_alive_pings = false;
    w.set_option(to);
    w.read_message_max(st_->opts.max_frame_bytes);
    w.auto_fragment(false);
    // Never send Sec-WebSocket-Protocol: ws 1.x rejects a subprotocol it did not ask for.
    w.set_option(websocket::stream_base::decorator(
        [host = std::string(req[http::field::host]),
         transport = tls_ ? Transport::kTls : Transport::kPlain](websocket::response_type& res) {
          res.set(http::field::server, "parley");
          for (const auto& [k, v] : securityHeaders(host, transport)) res.set(k, v);
        }));
    auto [ec] = co_await w.async_accept(req, kTuple);
    if (ec) {
      spdlog::debug("websocket accept failed: {}", ec.message());
      co_return;
    }
    ws->setHandler(d.make(ws));
    auto id = st_->track(ws);
    if (st_->draining) ws->drain();
    if (st_->stopping) ws->shutdown();
    co_await ws->run();
    st_->untrack(id);
  }

  std::shared_ptr<NetState> st_;
  Stream stream_;
  asio::any_io_executor executor_;  // the connection's strand
  bool tls_;
  // The Host of the request being answered (names the WebSocket origin in the policy).
  std::string host_;
  std::string local_host_;
  std::string remote_address_;
  std::atomic<bool> busy_{false};  // a request is being read or answered (drainBusy reads it)
  std::atomic<bool> upgraded_{false};
};

// ---------------------------------------------------------------------------------------------

void logException(std::exception_ptr e, const char* where) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: unexpected exception: {}", where, ex.what());
  } catch (...) {
    spdlog::error("{}: unexpected exception", where);
  }
}

template <class Stream>
void spawnHttp(std::shared_ptr<NetState> st, Stream&& stream, bool tls, std::string local_host) {
  auto ex = beast::get_lowest_layer(stream).get_executor();
  auto s = std::make_shared<HttpSession<Stream>>(st, std::move(stream), tls, std::move(local_host));
  auto id = st->track(s);
  asio::co_spawn(ex, s->run(), [st, id, s](std::exception_ptr e) {
    logException(e, "http session");
    st->untrack(id);
  });
}

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
      auto a = bind(st_->opts.http_listen);
      if (!a) return std::unexpected(a.error());
      out.http_host = hostString((*a)->local_endpoint());
      http_acceptor_ = std::move(*a);
      http_host_ = out.http_host;
    }
    if (!st_->opts.https_listen.empty()) {
      auto a = bind(st_->opts.https_listen);
      if (!a) return std::unexpected(a.error());
      out.https_host = hostString((*a)->local_endpoint());
      https_acceptor_ = std::move(*a);
      https_host_ = out.https_host;
    }
    return out;
  }

  void start() override {
    if (http_acceptor_) spawnAccept(*http_acceptor_, false, http_host_);
    if (https_acceptor_) spawnAccept(*https_acceptor_, true, https_host_);
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
    asio::post(st_->ioc, [this] {
      boost::system::error_code ec;
      if (http_acceptor_) http_acceptor_->close(ec);
      if (https_acceptor_) https_acceptor_->close(ec);
    });
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
      boost::system::error_code ec;
      if (http_acceptor_) http_acceptor_->close(ec);
      if (https_acceptor_) https_acceptor_->close(ec);
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

 private:
  Result<std::unique_ptr<tcp::acceptor>> bind(const std::string& hostport) {
    auto ep = parseEndpoint(hostport);
    if (!ep) return std::unexpected(ep.error());
    auto acc = std::make_unique<tcp::acceptor>(asio::make_strand(st_->ioc));
    boost::system::error_code ec;
    acc->open(ep->protocol(), ec);
    if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acc->bind(*ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return makeError(ErrorCode::kUnavailable,
                       fmt::format("cannot listen on {}: {}", hostport, ec.message()));
    return acc;
  }

  void spawnAccept(tcp::acceptor& acc, bool tls, std::string host) {
    asio::co_spawn(acc.get_executor(), acceptLoop(st_, acc, tls, std::move(host)),
                   [](std::exception_ptr e) { logException(e, "acceptor"); });
  }

  static awaitable<void> acceptLoop(std::shared_ptr<NetState> st, tcp::acceptor& acc, bool tls,
                                    std::string host) {
    for (;;) {
      auto [ec, sock] =
          co_await acc.async_accept(asio::make_strand(st->connectionContext()), kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acc.is_open() || st->stopping) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      boost::system::error_code ignore;
      sock.set_option(tcp::no_delay(true), ignore);
      if (tls) {
        spawnHttp(st, TlsStream(beast::tcp_stream(std::move(sock)), st->ssl_ctx), true, host);
      } else {
        spawnHttp(st, PlainStream(std::move(sock)), false, host);
      }
    }
  }

  // Every ws_idle_timeout / kIdleTicks: the next tick, and each connection checks its silence.
  // On an io thread (the timer's); a connection with something to do posts to its own strand.
  void sweepIdle() {
    const auto period =
        std::chrono::duration_cast<std::chrono::milliseconds>(st_->opts.ws_idle_timeout) /
        kIdleTicks;
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
  std::unique_ptr<tcp::acceptor> http_acceptor_;
  std::unique_ptr<tcp::acceptor> https_acceptor_;
  std::string http_host_;
  std::string https_host_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  asio::steady_timer idle_timer_{asio::make_strand(ioc_)};
  std::vector<std::thread> threads_;
};

class BlockingPoolImpl final : public BlockingPool {
 public:
  explicit BlockingPoolImpl(int n) : pool_(static_cast<std::size_t>(std::max(1, n))) {
    nameThreads([this](auto task) { asio::post(pool_, std::move(task)); },
                static_cast<std::size_t>(std::max(1, n)), "net-blocking");
  }
  ~BlockingPoolImpl() override { join(); }
  // BlockingExecutor
  void run(std::function<void()> work) override {
    asio::post(pool_, [w = std::move(work)] {
      try {
        w();
      } catch (const std::exception& e) {
        spdlog::error("blocking work: unexpected exception: {}", e.what());
      } catch (...) {
        spdlog::error("blocking work: unexpected exception");
      }
    });
  }
  // BlockingPool
  void join() override {
    if (joined_.exchange(true)) return;
    pool_.join();
  }

 private:
  asio::thread_pool pool_;
  std::atomic<bool> joined_{false};
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

std::unique_ptr<BlockingPool> makeBlockingPool(int threads) {
  return std::make_unique<BlockingPoolImpl>(threads);
}

}  // namespace parley::server
