// Every response the network layer writes carries the security headers: the router's answers
// (whatever headers a route sets), the layer's own errors (413, 431, 400), rejected and
// accepted WebSocket upgrades.

#include "server/security_headers.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "server/http_types.h"
#include "server/metrics.h"
#include "server/net.h"

namespace parley::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

TEST(ContentSecurityPolicy, StrictAndNamesTheWebSocketOrigin) {
  std::string p = contentSecurityPolicy("127.0.0.1:8080", Transport::kPlain);
  for (const char* d : {"default-src 'none'", "script-src 'self';", "style-src 'self';",
                        "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
                        "form-action 'self'", "connect-src 'self' ws://127.0.0.1:8080;"})
    EXPECT_NE(p.find(d), std::string::npos) << d << " in " << p;
  for (const char* never : {"unsafe-inline", "unsafe-eval", "*", "http:"})
    EXPECT_EQ(p.find(never), std::string::npos) << never << " in " << p;
  EXPECT_NE(contentSecurityPolicy("example.com", Transport::kTls)
                .find("connect-src 'self' wss://example.com;"),
            std::string::npos);
  EXPECT_NE(contentSecurityPolicy("[::1]:8443", Transport::kTls)
                .find("connect-src 'self' wss://[::1]:8443;"),
            std::string::npos);
  // A Host that is not a plain host[:port] adds nothing to the policy.
  for (const char* bad : {"", "evil.example; script-src *", "a b", "x:99999999", "*", "x:", "[::1",
                          "'self'", "host,other", "-x.example"})
    EXPECT_NE(contentSecurityPolicy(bad, Transport::kPlain).find("connect-src 'self'; "),
              std::string::npos)
        << bad;
}

// GET /ok → 200 with a route's own headers; GET /csp → a route that tries to set a weaker
// policy; upgrades to /ws are accepted, others rejected with 401.
class App final : public HttpApp {
 public:
  void handle(HttpRequest req, HttpDone done) override {
    HttpResponse r;
    r.content_type = "text/html";
    r.body = "<p>ok</p>";
    r.headers.emplace_back("Cache-Control", "no-store");
    if (req.target == "/csp") r.headers.emplace_back("Content-Security-Policy", "default-src *");
    if (req.target == "/missing") r.status = 404;
    done(std::move(r));
  }
  void upgrade(HttpRequest req, std::function<void(UpgradeDecision)> done) override {
    UpgradeDecision d;
    if (req.target == "/ws") {
      d.make = [](std::shared_ptr<WsTransport>) -> std::shared_ptr<WsHandler> {
        struct Quiet final : WsHandler {
          void onOpen() override {}
          void onFrame(std::string) override {}
          void onClose() override {}
        };
        return std::make_shared<Quiet>();
      };
    } else {
      d.reject = HttpResponse{401, "application/json", R"({"error":"no"})", {}, "ws"};
    }
    done(std::move(d));
  }
};

class SecurityHeadersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NetOptions o;
    o.http_listen = "127.0.0.1:0";
    o.https_listen = "";
    o.threads = 1;
    o.max_body_bytes = 100;
    auto net = makeNet(o, app_, metrics_);
    ASSERT_TRUE(net) << net.error().message;
    net_ = std::move(*net);
    auto ports = net_->listen();
    ASSERT_TRUE(ports) << ports.error().message;
    host_ = ports->http_host;
    net_->start();
  }
  void TearDown() override {
    if (net_) net_->stop(std::chrono::milliseconds(2000));
  }

  // Sends `raw` and parses the one response.
  http::response<http::string_body> exchange(const std::string& raw) {
    asio::io_context io;
    beast::tcp_stream s(io);
    asio::ip::tcp::resolver resolver(io);
    const auto colon = host_.rfind(':');
    s.connect(resolver.resolve(host_.substr(0, colon), host_.substr(colon + 1)));
    s.expires_after(std::chrono::seconds(20));
    asio::write(s, asio::buffer(raw));
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    beast::error_code ec;
    http::read(s, buf, res, ec);
    EXPECT_FALSE(ec) << ec.message() << " for " << raw.substr(0, 60);
    return res;
  }

  void expectHeaders(const http::response<http::string_body>& res, const std::string& what) {
    SCOPED_TRACE(what);
    auto csp = res.equal_range("Content-Security-Policy");
    ASSERT_EQ(std::distance(csp.first, csp.second), 1) << "exactly one policy";
    EXPECT_EQ(std::string(csp.first->value()), contentSecurityPolicy(host_, Transport::kPlain));
    EXPECT_EQ(res["X-Content-Type-Options"], "nosniff");
    EXPECT_EQ(res["Referrer-Policy"], "no-referrer");
    EXPECT_EQ(res["X-Frame-Options"], "DENY");
  }

  std::string get(const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: " + host_ + "\r\nConnection: close\r\n\r\n";
  }

  App app_;
  Metrics metrics_;
  std::unique_ptr<Net> net_;
  std::string host_;
};

TEST_F(SecurityHeadersTest, OnEveryKindOfResponse) {
  auto ok = exchange(get("/ok"));
  EXPECT_EQ(ok.result_int(), 200);
  EXPECT_EQ(ok["Cache-Control"], "no-store") << "a route's own headers stay";
  expectHeaders(ok, "200");
  auto missing = exchange(get("/missing"));
  EXPECT_EQ(missing.result_int(), 404);
  expectHeaders(missing, "404");
  auto csp = exchange(get("/csp"));
  expectHeaders(csp, "a route cannot weaken the policy");

  auto big = exchange("POST /ok HTTP/1.1\r\nHost: " + host_ + "\r\nContent-Length: 101\r\n\r\n" +
                      std::string(101, 'x'));
  EXPECT_EQ(big.result_int(), 413);
  expectHeaders(big, "413");
  auto huge = exchange("GET /ok HTTP/1.1\r\nHost: " + host_ +
                       "\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.result_int(), 431);
  expectHeaders(huge, "431");
  auto bad = exchange("POST /ok HTTP/1.1\r\nHost: " + host_ +
                      "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(bad.result_int(), 400);
  expectHeaders(bad, "400");
  auto rejected =
      exchange("GET /nope HTTP/1.1\r\nHost: " + host_ +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  EXPECT_EQ(rejected.result_int(), 401);
  expectHeaders(rejected, "rejected upgrade");
}

TEST_F(SecurityHeadersTest, OnTheWebSocketHandshake) {
  asio::io_context io;
  websocket::stream<beast::tcp_stream> ws(io);
  asio::ip::tcp::resolver resolver(io);
  const auto colon = host_.rfind(':');
  beast::get_lowest_layer(ws).connect(
      resolver.resolve(host_.substr(0, colon), host_.substr(colon + 1)));
  websocket::response_type res;
  ws.handshake(res, host_, "/ws");
  EXPECT_EQ(res.result_int(), 101);
  EXPECT_EQ(res["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(res["Referrer-Policy"], "no-referrer");
  EXPECT_FALSE(res["Content-Security-Policy"].empty());
  ws.close(websocket::close_code::normal);
}

}  // namespace
}  // namespace parley::server
