#include "functions/engine/http_client.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url.hpp>
#include <mutex>
#include <optional>
#include <thread>

#include "common/thread_name.h"

namespace parley::functions::engine {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct HttpClient::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  // Created on first https use: building an OpenSSL context costs ~100 ms.
  std::once_flag tls_once;
  std::optional<ssl::context> tls;
  std::size_t max_body = 0;
  AddressPolicy policy;

  ssl::context& tlsContext() {
    std::call_once(tls_once, [this] {
      tls.emplace(ssl::context::tls_client);
      boost::system::error_code ec;
      tls->set_default_verify_paths(ec);
      tls->set_verify_mode(ssl::verify_peer);
    });
    return *tls;
  }
  std::vector<std::thread> threads;
};

namespace {

struct Target {
  bool https = false;
  std::string host;       // for the resolver, SNI and messages: "example.com", "::1"
  std::string host_text;  // as in the URL, for the Host header: "example.com", "[::1]"
  std::string port;
  std::string path;
};

Result<Target> parseTarget(const std::string& url) {
  auto u = boost::urls::parse_uri(url);
  if (!u) return invalid("'" + url + "' is not an absolute URL");
  Target t;
  std::string scheme(u->scheme());
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "https") {
    t.https = true;
  } else if (scheme != "http") {
    return invalid("only http and https URLs are allowed, not '" + scheme + "'");
  }
  if (!u->has_authority() || u->encoded_host().empty())
    return invalid("URL '" + url + "' has no host");
  t.host = std::string(u->encoded_host());
  t.host_text = t.host;
  if (u->host_type() == boost::urls::host_type::ipv6) {
    t.host = std::string(u->encoded_host_address());
  }
  t.port = u->has_port() ? std::string(u->port()) : (t.https ? "443" : "80");
  t.path = std::string(u->encoded_path());
  if (t.path.empty()) t.path = "/";
  if (u->has_query()) t.path += "?" + std::string(u->encoded_query());
  return t;
}

template <class Stream>
asio::awaitable<Result<HttpResponse>> exchange(Stream& stream, const Target& t,
                                               const HttpRequest& r, std::size_t max_body) {
  beast::error_code ec;
  http::request<http::string_body> req;
  auto verb = http::string_to_verb(r.method);
  if (verb == http::verb::unknown) co_return invalid("unknown HTTP method '" + r.method + "'");
  req.method(verb);
  req.target(t.path);
  req.version(11);
  bool default_port = (t.https && t.port == "443") || (!t.https && t.port == "80");
  req.set(http::field::host, default_port ? t.host_text : t.host_text + ":" + t.port);
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : r.headers) req.set(k, v);
  if (!r.body.empty() || verb == http::verb::post || verb == http::verb::put ||
      verb == http::verb::patch) {
    req.body() = r.body;
    req.prepare_payload();
  }
  beast::get_lowest_layer(stream).expires_after(r.timeout);
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return makeError(ErrorCode::kUnavailable, "sending the request failed: " + ec.message());
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body);
  parser.header_limit(64 * 1024);
  co_await http::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == beast::error::timeout)
    co_return makeError(ErrorCode::kTimeout, "the request timed out (ETIMEDOUT)");
  if (ec == http::error::body_limit)
    co_return makeError(ErrorCode::kTooLarge, "the response body is larger than the limit");
  if (ec)
    co_return makeError(ErrorCode::kUnavailable, "reading the response failed: " + ec.message());
  auto res = parser.release();
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& f : res)
    out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  out.body = std::move(res.body());
  co_return out;
}

asio::awaitable<Result<HttpResponse>> doFetch(HttpClient::Impl& impl, HttpRequest r) {
  if (auto s = checkOutboundRequest(r.method, r.url, r.headers, r.body.size(), impl.max_body); !s)
    co_return std::unexpected(s.error());
  auto target = parseTarget(r.url);
  if (!target) co_return std::unexpected(target.error());
  auto ex = co_await asio::this_coro::executor;
  beast::error_code ec;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(target->host, target->port,
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return makeError(ErrorCode::kUnavailable,
                        "cannot resolve host '" + target->host + "': " + ec.message());
  // Every address the name resolved to must be allowed: refusing the whole name (not just the
  // internal addresses) keeps a mixed answer from reaching inside on a fallback connect. The
  // connect below uses exactly these results.
  if (endpoints.empty())
    co_return makeError(ErrorCode::kUnavailable, "host '" + target->host + "' has no address");
  for (const auto& e : endpoints)
    if (auto s = impl.policy.check(target->host, e.endpoint().address()); !s)
      co_return makeError(ErrorCode::kForbidden, "the request was refused: " + s.error().message);
  if (!target->https) {
    beast::tcp_stream stream(ex);
    stream.expires_after(r.timeout);
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout)
      co_return makeError(ErrorCode::kTimeout, "connecting timed out");
    if (ec)
      co_return makeError(ErrorCode::kUnavailable,
                          "cannot connect to '" + target->host + "': " + ec.message());
    auto res = co_await exchange(stream, *target, r, impl.max_body);
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    co_return res;
  }
  beast::ssl_stream<beast::tcp_stream> stream(ex, impl.tlsContext());
  if (!SSL_set_tlsext_host_name(stream.native_handle(), target->host.c_str()))
    co_return makeError(ErrorCode::kUnavailable, "cannot set TLS SNI");
  stream.set_verify_mode(ssl::verify_peer);
  stream.set_verify_callback(ssl::host_name_verification(target->host));
  beast::get_lowest_layer(stream).expires_after(r.timeout);
  co_await beast::get_lowest_layer(stream).async_connect(
      endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == beast::error::timeout) co_return makeError(ErrorCode::kTimeout, "connecting timed out");
  if (ec)
    co_return makeError(ErrorCode::kUnavailable,
                        "cannot connect to '" + target->host + "': " + ec.message());
  co_await stream.async_handshake(ssl::stream_base::client,
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return makeError(ErrorCode::kUnavailable,
                        "TLS handshake with '" + target->host + "' failed: " + ec.message());
  auto res = co_await exchange(stream, *target, r, impl.max_body);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
  co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  co_return res;
}

}  // namespace

HttpClient::HttpClient(int threads, std::size_t max_body_bytes, AddressPolicy policy)
    : impl_(std::make_unique<Impl>()) {
  impl_->max_body = max_body_bytes;
  impl_->policy = std::move(policy);
  for (int i = 0; i < std::max(1, threads); ++i)
    impl_->threads.emplace_back([this] {
      nameThisThread("fn-http");
      impl_->io.run();
    });
}

HttpClient::~HttpClient() {
  impl_->work.reset();
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
}

Result<std::string> HttpClient::hostOf(const std::string& url) {
  auto t = parseTarget(url);
  if (!t) return std::unexpected(t.error());
  return t->host;
}

void HttpClient::fetch(HttpRequest request, std::function<void(Result<HttpResponse>)> done) {
  auto shared_done = std::make_shared<std::function<void(Result<HttpResponse>)>>(std::move(done));
  asio::co_spawn(impl_->io, doFetch(*impl_, std::move(request)),
                 [shared_done](std::exception_ptr ep, Result<HttpResponse> r) {
                   if (ep) {
                     (*shared_done)(makeError(ErrorCode::kInternal, "HTTP client failure"));
                     return;
                   }
                   (*shared_done)(std::move(r));
                 });
}

}  // namespace parley::functions::engine
