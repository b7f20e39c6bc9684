#include "cli/http_client.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <boost/url/parse.hpp>

#include "common/json.h"

namespace parley::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::unexpected<Error> unreachable(const std::string& url, std::string_view what,
                                   const boost::system::error_code& ec) {
  return makeError(ErrorCode::kUnavailable,
                   fmt::format("cannot reach {}: {} failed: {}", url, what, ec.message()));
}

void setTimeouts(int fd, std::chrono::seconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count());
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

template <class Stream>
Result<HttpResponse> exchange(Stream& stream, http::request<http::string_body>& req,
                              const std::string& url) {
  boost::system::error_code ec;
  http::write(stream, req, ec);
  if (ec) return unreachable(url, "sending the request", ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(stream, buffer, parser, ec);
  if (ec) return unreachable(url, "reading the response", ec);
  auto res = parser.release();
  return HttpResponse{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace

HttpClient::HttpClient(std::string base_url, std::string ca_file, std::string bearer,
                       std::chrono::seconds timeout)
    : base_url_(std::move(base_url)),
      ca_file_(std::move(ca_file)),
      bearer_(std::move(bearer)),
      timeout_(timeout) {}

Result<HttpResponse> HttpClient::request(const std::string& method, const std::string& target,
                                         const std::string& body) {
  auto url = boost::urls::parse_uri(base_url_);
  if (!url)
    return invalid(
        fmt::format("'{}' is not a server URL such as https://127.0.0.1:8443", base_url_));
  const std::string scheme(url->scheme());
  const bool tls = scheme == "https";
  if (!tls && scheme != "http")
    return invalid(fmt::format("server URL '{}' must start with http:// or https://", base_url_));
  const std::string host(url->host());
  const std::string port = url->has_port() ? std::string(url->port()) : (tls ? "443" : "80");

  http::request<http::string_body> req;
  req.method(http::string_to_verb(method));
  if (req.method() == http::verb::unknown)
    return invalid(fmt::format("unknown HTTP method {}", method));
  req.target(target);
  req.version(11);
  req.set(http::field::host, url->has_port() ? host + ":" + port : host);
  req.set(http::field::user_agent, "parley-cli");
  req.set(http::field::accept, "application/json");
  if (!bearer_.empty()) req.set(http::field::authorization, "Bearer " + bearer_);
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(false);
  req.prepare_payload();

  asio::io_context ioc;
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return unreachable(base_url_, "resolving the host", ec);

  if (!tls) {
    tcp::socket socket(ioc);
    asio::connect(socket, endpoints, ec);
    if (ec) return unreachable(base_url_, "connecting", ec);
    setTimeouts(socket.native_handle(), timeout_);
    auto r = exchange(socket, req, base_url_);
    socket.shutdown(tcp::socket::shutdown_both, ec);
    return r;
  }

  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_peer);
  if (!ca_file_.empty()) {
    ctx.load_verify_file(ca_file_, ec);
    if (ec)
      return invalid(fmt::format("cannot load the CA file {}: {} (pass --ca DIR/tls/ca.pem)",
                                 ca_file_, ec.message()));
  } else {
    ctx.set_default_verify_paths(ec);
  }
  ssl::stream<tcp::socket> stream(ioc, ctx);
  stream.set_verify_callback(ssl::host_name_verification(host));
  if (!SSL_set_tlsext_host_name(stream.native_handle(), host.c_str()))
    return makeError(ErrorCode::kInternal, "cannot set TLS SNI");
  asio::connect(stream.next_layer(), endpoints, ec);
  if (ec) return unreachable(base_url_, "connecting", ec);
  setTimeouts(stream.next_layer().native_handle(), timeout_);
  stream.handshake(ssl::stream_base::client, ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("TLS handshake with {} failed: {}; if the server uses its own "
                                 "CA, pass --ca DIR/tls/ca.pem to 'parley login'",
                                 base_url_, ec.message()));
  auto r = exchange(stream, req, base_url_);
  stream.shutdown(ec);  // the server may close without close_notify; that is fine
  return r;
}

std::string apiErrorMessage(const HttpResponse& r) {
  if (auto o = json::parseObject(r.body)) {
    if (const auto* e = o->if_contains("error"); e && e->is_object()) {
      std::string code = json::getString(e->as_object(), "code");
      std::string msg = json::getString(e->as_object(), "message");
      if (!msg.empty()) return code.empty() ? msg : fmt::format("{}: {}", code, msg);
    }
  }
  if (r.body.empty()) return fmt::format("HTTP {}", r.status);
  return fmt::format("HTTP {}: {}", r.status, r.body);
}

}  // namespace parley::cli
