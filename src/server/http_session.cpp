#include "server/http_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url.hpp>
#include <cctype>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "server/security_headers.h"
#include "server/ws_session.h"

namespace parley::server::net {
namespace {

namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::use_awaitable;

// A request body up to this size is read even past max_body_bytes (and dropped), so the client
// gets a clean 413 instead of a reset connection.
constexpr std::size_t kDrainLimit = 16 << 20;

// Whether the connection stays open after a response.
enum class KeepAlive { kClose, kKeep };

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

HttpRequest toPlain(const http::request<http::string_body>& req, Transport transport,
                    const std::string& local_host) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  out.target = std::string(req.target());
  out.tls = transport == Transport::kTls;
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
                                             KeepAlive keep_alive, std::string_view host,
                                             Transport transport) {
  http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "parley");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.insert(k, v);
  for (const auto& [k, v] : securityHeaders(host, transport)) res.set(k, v);
  res.keep_alive(keep_alive == KeepAlive::kKeep);
  res.content_length(r.body.size());
  return res;
}

// Every response leaves through here (or, for an accepted WebSocket, the handshake decorator):
// the security headers are set last, so no route can drop or weaken them.
http::response<http::string_body> toBeast(const HttpResponse& r, unsigned version,
                                          KeepAlive keep_alive, std::string_view host,
                                          Transport transport) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "parley");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.insert(k, v);
  for (const auto& [k, v] : securityHeaders(host, transport)) res.set(k, v);
  res.body() = r.body;
  res.keep_alive(keep_alive == KeepAlive::kKeep);
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

// One connection from accept to close: the TLS handshake (HTTPS), then requests read one after
// the other (keep-alive), each handed to the HttpApp and answered; an upgrade request hands the
// stream to the WebSocket session (runWebSocket) and ends the HTTP session. Shared by its
// coroutine and (weakly) the Net's list of live sessions; the coroutine and everything it posts
// run on the connection's strand; shutdown/drain/drainBusy may be called from any thread.
template <class Stream>
class HttpSession final : public Stoppable,
                          public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  static constexpr Transport kTransport =
      std::is_same_v<Stream, TlsStream> ? Transport::kTls : Transport::kPlain;

  HttpSession(std::shared_ptr<NetState> st, Stream&& stream, std::string local_host)
      : st_(std::move(st)),
        stream_(std::move(stream)),
        executor_(beast::get_lowest_layer(stream_).get_executor()),
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
    st_->metrics.socketOpened(SocketKind::kHttp);
    co_await serve();
    st_->metrics.socketClosed(SocketKind::kHttp);
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
        co_await write(r, 11, KeepAlive::kClose);
        break;
      }
      if (ec == http::error::header_limit) {
        HttpResponse r{431,
                       "application/json",
                       jsonError("TOO_LARGE", "the request headers are too large"),
                       {},
                       "too_large"};
        co_await write(r, 11, KeepAlive::kClose);
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
          co_await write(r, 11, KeepAlive::kClose);
        }
        break;
      }
      http::request<http::string_body> req = parser.release();
      if (websocket::is_upgrade(req)) {
        upgraded_ = true;
        co_await upgrade(std::move(req));
        co_return;
      }
      auto plain = std::make_shared<HttpRequest>(toPlain(req, kTransport, local_host_));
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
      const KeepAlive keep = req.keep_alive() && !st_->stopping && !st_->draining
                                 ? KeepAlive::kKeep
                                 : KeepAlive::kClose;
      bool ok = head ? co_await writeHead(res, req.version(), keep)
                     : co_await write(res, req.version(), keep);
      busy_ = false;
      if (!ok || keep == KeepAlive::kClose) break;
    }
    co_await closeStream();
  }

  awaitable<bool> write(const HttpResponse& r, unsigned version, KeepAlive keep_alive) {
    auto res = toBeast(r, version, keep_alive, host_, kTransport);
    beast::get_lowest_layer(stream_).expires_after(st_->opts.request_timeout);
    auto [ec, n] = co_await http::async_write(stream_, res, kTuple);
    co_return !ec;
  }

  awaitable<bool> writeHead(const HttpResponse& r, unsigned version, KeepAlive keep_alive) {
    auto res = toBeastHead(r, version, keep_alive, host_, kTransport);
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
    auto plain = std::make_shared<HttpRequest>(toPlain(req, kTransport, local_host_));
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
      co_await write(r, req.version(), KeepAlive::kClose);
      co_await closeStream();
      co_return;
    }
    st_->metrics.countRequest("ws_upgrade", 101);
    co_await runWebSocket(st_, std::move(stream_), std::move(req), std::move(d.make));
  }

  std::shared_ptr<NetState> st_;
  Stream stream_;
  asio::any_io_executor executor_;  // the connection's strand
  // The Host of the request being answered (names the WebSocket origin in the policy).
  std::string host_;
  std::string local_host_;
  std::string remote_address_;
  std::atomic<bool> busy_{false};  // a request is being read or answered (drainBusy reads it)
  std::atomic<bool> upgraded_{false};
};

template <class Stream>
void spawnOn(std::shared_ptr<NetState> st, Stream&& stream, std::string local_host) {
  auto ex = beast::get_lowest_layer(stream).get_executor();
  auto s = std::make_shared<HttpSession<Stream>>(st, std::move(stream), std::move(local_host));
  auto id = st->track(s);
  asio::co_spawn(ex, s->run(), [st, id, s](std::exception_ptr e) {
    logException(e, "http session");
    st->untrack(id);
  });
}

}  // namespace

void spawnHttpSession(std::shared_ptr<NetState> st, PlainStream stream, std::string local_host) {
  spawnOn(std::move(st), std::move(stream), std::move(local_host));
}

void spawnHttpSession(std::shared_ptr<NetState> st, TlsStream stream, std::string local_host) {
  spawnOn(std::move(st), std::move(stream), std::move(local_host));
}

}  // namespace parley::server::net
