#pragma once

// A minimal blocking HTTP + WebSocket consumer client (Beast) for connector tests and the load
// generator: signup, the consumer socket, request/response by id, notifications. Not
// thread-safe: one thread per client.

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <optional>
#include <string>

namespace parley::connector::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HostPort {
  std::string host;
  std::string port;
  // "http://127.0.0.1:1234" → {"127.0.0.1", "1234"}
  static HostPort fromUrl(const std::string& url) {
    std::string rest = url.substr(url.find("://") + 3);
    auto colon = rest.rfind(':');
    return HostPort{rest.substr(0, colon), rest.substr(colon + 1)};
  }
};

// One HTTP request; returns {status, body}.
inline std::pair<int, std::string> httpRequest(const HostPort& hp, http::verb verb,
                                               const std::string& target, const std::string& body,
                                               const std::string& bearer = "") {
  net::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  stream.connect(resolver.resolve(hp.host, hp.port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, hp.host);
  req.set(http::field::content_type, "application/json");
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res);
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(res.result_int()), res.body()};
}

class ConsumerSocket {
 public:
  ConsumerSocket() : ws_(ioc_) {}

  // Connects with `Authorization: jwt <jwt>`.
  void connect(const HostPort& hp, const std::string& account, const std::string& jwt) {
    tcp::resolver resolver(ioc_);
    net::connect(ws_.next_layer(), resolver.resolve(hp.host, hp.port));
    ws_.set_option(websocket::stream_base::decorator([jwt](websocket::request_type& req) {
      req.set(http::field::authorization, "jwt " + jwt);
    }));
    ws_.handshake(hp.host + ":" + hp.port,
                  "/ws_api/account/" + account + "/messaging/consumer?v=3");
  }
  // Sends a request and returns its id.
  std::string request(const std::string& type, boost::json::object body) {
    std::string id = std::to_string(++next_id_);
    send(boost::json::object{
        {"kind", "req"}, {"id", id}, {"type", type}, {"body", std::move(body)}});
    return id;
  }
  void send(const boost::json::object& o) { ws_.write(net::buffer(boost::json::serialize(o))); }
  // The next frame, or nullopt after `timeout_ms` without one.
  std::optional<boost::json::value> read(int timeout_ms) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    beast::flat_buffer buf;
    beast::error_code ec;
    ws_.read(buf, ec);
    if (ec) return std::nullopt;
    return boost::json::parse(beast::buffers_to_string(buf.data()));
  }
  // Reads until the response to `id` (notifications read meanwhile go to `pending`).
  std::optional<boost::json::value> response(const std::string& id, int timeout_ms) {
    for (int i = 0; i < 100; ++i) {
      auto f = read(timeout_ms);
      if (!f) return std::nullopt;
      if (f->is_object() && f->as_object().contains("reqId")) {
        const auto& r = f->at("reqId");
        std::string got = r.is_string() ? std::string(r.as_string()) : boost::json::serialize(r);
        if (got == id) return f;
      }
      pending.push_back(std::move(*f));
    }
    return std::nullopt;
  }
  void close() {
    beast::error_code ec;
    ws_.close(websocket::close_code::normal, ec);
  }
  // The close frame the server sent, after read() ended because the server closed.
  const websocket::close_reason& closeReason() const { return ws_.reason(); }

  std::vector<boost::json::value> pending;

 private:
  net::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
  int next_id_ = 0;
};

}  // namespace parley::connector::testing
