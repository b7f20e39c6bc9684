// Unit tests of the plain-C++ engine parts: fair queue, outbound policy, watchdog.

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <future>
#include <thread>

#include "common/testing/fake_clock.h"
#include "common/testing/linked_limit_peers.h"
#include "functions/engine/fair_queue.h"
#include "functions/engine/http_client.h"
#include "functions/engine/outbound.h"
#include "functions/engine/watchdog.h"

namespace parley::functions::engine {
namespace {

TEST(FairQueue, RoundRobinAcrossKeys) {
  FairQueue<int> q;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(q.push("hot", i, 1000, 1000));
  ASSERT_TRUE(q.push("cold", 1000, 1000, 1000));
  EXPECT_EQ(*q.pop(), 0);
  EXPECT_EQ(*q.pop(), 1000);  // the cold key is served second, not after 100 hot items
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(q.size(), 98u);
}

TEST(FairQueue, Bounds) {
  FairQueue<int> q;
  EXPECT_TRUE(q.push("a", 1, 2, 3));
  EXPECT_TRUE(q.push("a", 2, 2, 3));
  EXPECT_FALSE(q.push("a", 3, 2, 3));  // per key
  EXPECT_TRUE(q.push("b", 4, 2, 3));
  EXPECT_FALSE(q.push("c", 5, 2, 3));  // total
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(*q.pop(), 4);
  EXPECT_EQ(*q.pop(), 2);
  EXPECT_FALSE(q.pop().has_value());
}

TEST(Outbound, AllowlistRules) {
  std::vector<std::string> list = {"api.example.com", "*.wild.org", "LocalHost"};
  EXPECT_TRUE(hostAllowed("api.example.com", list));
  EXPECT_TRUE(hostAllowed("API.Example.com.", list));
  EXPECT_FALSE(hostAllowed("www.api.example.com", list));
  EXPECT_FALSE(hostAllowed("example.com", list));  // a bare apex is not www. and vice versa
  EXPECT_TRUE(hostAllowed("a.wild.org", list));
  EXPECT_FALSE(hostAllowed("wild.org", list));
  EXPECT_FALSE(hostAllowed("a.b.wild.org", list));  // one level only
  EXPECT_FALSE(hostAllowed("evilwild.org", list));
  EXPECT_TRUE(hostAllowed("localhost", list));
  EXPECT_FALSE(hostAllowed("", list));
}

TEST(Outbound, RateLimitPerSecondPerKey) {
  parley::testing::FakeClock clock(1'000'000);
  RateLimiter r(clock, 3);
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_FALSE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("g"));
  clock.advanceMs(1000);
  EXPECT_TRUE(r.tryAcquire("f"));
}

TEST(Outbound, RateLimitHoldsAcrossTheNodesOfACluster) {
  testing::FakeClock clock;
  testing::LinkedLimitPeers links(3);
  RateLimiter a(clock, 3, links.node(0)), b(clock, 3, links.node(1)), c(clock, 3, links.node(2));
  // Three requests of function f spread over nodes a and b use up f's second on all three.
  EXPECT_TRUE(a.tryAcquire("f"));
  EXPECT_TRUE(b.tryAcquire("f"));
  EXPECT_TRUE(a.tryAcquire("f"));
  EXPECT_FALSE(c.tryAcquire("f"));
  EXPECT_FALSE(b.tryAcquire("f"));
  EXPECT_TRUE(c.tryAcquire("g"));
  EXPECT_EQ(c.peerEvents(), 3u);
  // The next second starts afresh everywhere.
  clock.advanceMs(1000);
  EXPECT_TRUE(c.tryAcquire("f"));
  EXPECT_TRUE(b.tryAcquire("f"));
  EXPECT_TRUE(a.tryAcquire("f"));
  EXPECT_FALSE(a.tryAcquire("f"));
}

TEST(Outbound, ARateLimitIgnoresOldAndMalformedEventsOfOtherNodes) {
  testing::FakeClock clock;
  testing::LinkedLimitPeers links(2);
  RateLimiter a(clock, 1, links.node(0));
  auto peer = links.node(1);
  const auto second = [&](TimeMs offset) { return std::to_string(clock.nowMs() / 1000 + offset); };
  // Requests of seconds long past or far ahead (clocks apart) do not count.
  peer->publish("function-http", second(-2) + " f");
  peer->publish("function-http", second(2) + " f");
  const std::vector<std::string> malformed = {"",     second(0), second(0) + " ",  "x f",
                                              "-1 f", " f",      second(0) + "x f"};
  for (const auto& bad : malformed) peer->publish("function-http", bad);
  // Another limit's events are not this one's.
  peer->publish("login", second(0) + " f");
  EXPECT_EQ(a.peerEvents(), 0u);
  EXPECT_TRUE(a.tryAcquire("f"));
  EXPECT_FALSE(a.tryAcquire("f"));
  // One made in the second before (a clock a little behind) counts in this one.
  peer->publish("function-http", second(-1) + " g");
  EXPECT_EQ(a.peerEvents(), 1u);
  EXPECT_FALSE(a.tryAcquire("g"));
}

// ---- address policy ---------------------------------------------------------------------------

AddressRange rangeOf(const char* text) {
  return classifyAddress(boost::asio::ip::make_address(text));
}

TEST(Outbound, ClassifiesEveryInternalRange) {
  struct Case {
    const char* address;
    AddressRange range;
  };
  const Case cases[] = {
      {"93.184.216.34", AddressRange::kPublic},
      {"8.8.8.8", AddressRange::kPublic},
      {"2606:2800:220:1:248:1893:25c8:1946", AddressRange::kPublic},
      {"127.0.0.1", AddressRange::kLoopback},
      {"127.255.255.254", AddressRange::kLoopback},
      {"::1", AddressRange::kLoopback},
      {"10.0.0.1", AddressRange::kPrivate},
      {"172.16.0.1", AddressRange::kPrivate},
      {"172.31.255.255", AddressRange::kPrivate},
      {"172.32.0.1", AddressRange::kPublic},  // just past 172.16/12
      {"192.168.0.1", AddressRange::kPrivate},
      {"fc00::1", AddressRange::kPrivate},
      {"fd12:3456::1", AddressRange::kPrivate},
      {"fec0::1", AddressRange::kPrivate},
      {"64:ff9b:1::1", AddressRange::kPrivate},
      {"169.254.0.1", AddressRange::kLinkLocal},
      {"fe80::1", AddressRange::kLinkLocal},
      {"100.64.0.1", AddressRange::kCgnat},
      {"100.127.255.255", AddressRange::kCgnat},
      {"100.128.0.1", AddressRange::kPublic},  // just past 100.64/10
      {"169.254.169.254", AddressRange::kMetadata},
      {"169.254.170.2", AddressRange::kMetadata},
      {"100.100.100.200", AddressRange::kMetadata},
      {"168.63.129.16", AddressRange::kMetadata},
      {"fd00:ec2::254", AddressRange::kMetadata},
      {"0.0.0.0", AddressRange::kUnspecified},
      {"0.1.2.3", AddressRange::kUnspecified},
      {"::", AddressRange::kUnspecified},
      {"224.0.0.1", AddressRange::kMulticast},
      {"239.255.255.255", AddressRange::kMulticast},
      {"ff02::1", AddressRange::kMulticast},
      {"255.255.255.255", AddressRange::kBroadcast},
      {"240.0.0.1", AddressRange::kReserved},
      {"192.0.2.1", AddressRange::kReserved},
      {"198.51.100.1", AddressRange::kReserved},
      {"203.0.113.1", AddressRange::kReserved},
      {"198.18.0.1", AddressRange::kReserved},
      {"192.0.0.8", AddressRange::kReserved},
      {"2001:db8::1", AddressRange::kReserved},
      {"2001::1", AddressRange::kReserved},  // Teredo
      {"100::1", AddressRange::kReserved},   // outside 2000::/3
      // IPv4 carried in IPv6: classified by the IPv4 address.
      {"::ffff:127.0.0.1", AddressRange::kLoopback},
      {"::ffff:10.1.2.3", AddressRange::kPrivate},
      {"::ffff:169.254.169.254", AddressRange::kMetadata},
      {"::ffff:93.184.216.34", AddressRange::kPublic},
      {"::127.0.0.1", AddressRange::kLoopback},      // IPv4-compatible
      {"::93.184.216.34", AddressRange::kReserved},  // IPv4-compatible, deprecated
      {"64:ff9b::7f00:1", AddressRange::kLoopback},  // NAT64
      {"64:ff9b::a9fe:a9fe", AddressRange::kMetadata},
      {"2002:7f00:1::1", AddressRange::kLoopback},     // 6to4
      {"2002:5db8:d822::1", AddressRange::kReserved},  // 6to4 of a public address
  };
  for (const auto& c : cases)
    EXPECT_EQ(addressRangeName(rangeOf(c.address)), addressRangeName(c.range)) << c.address;
}

TEST(Outbound, PolicyRefusesInternalAddressesByDefault) {
  AddressPolicy p;
  auto a = boost::asio::ip::make_address("127.0.0.1");
  auto s = p.check("localhost", a);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kForbidden);
  EXPECT_NE(s.error().message.find("'localhost' resolves to 127.0.0.1, a loopback address"),
            std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("--outbound-allow"), std::string::npos);
  EXPECT_TRUE(p.check("example.com", boost::asio::ip::make_address("93.184.216.34")));
}

TEST(Outbound, PolicyOpensNamedRangesAndCidrs) {
  auto p = AddressPolicy::parse({"loopback", "Private", "10.1.0.0/16", "fd12::/16"});
  ASSERT_TRUE(p) << p.error().message;
  auto ok = [&](const char* a) {
    return p->check("h", boost::asio::ip::make_address(a)).has_value();
  };
  EXPECT_TRUE(ok("127.0.0.1"));
  EXPECT_TRUE(ok("::ffff:127.0.0.1"));
  EXPECT_TRUE(ok("192.168.1.1"));
  EXPECT_FALSE(ok("169.254.169.254"));  // metadata is not opened by private or loopback
  EXPECT_FALSE(ok("169.254.1.1"));
  EXPECT_FALSE(ok("100.64.0.1"));

  auto cidr = AddressPolicy::parse({"100.64.1.0/24", "169.254.169.254"});
  ASSERT_TRUE(cidr);
  auto ok2 = [&](const char* a) {
    return cidr->check("h", boost::asio::ip::make_address(a)).has_value();
  };
  EXPECT_TRUE(ok2("100.64.1.7"));
  EXPECT_TRUE(ok2("::ffff:100.64.1.7"));  // a CIDR covers the IPv4-mapped form
  EXPECT_FALSE(ok2("100.64.2.7"));
  EXPECT_TRUE(ok2("169.254.169.254"));  // a single address
  EXPECT_FALSE(ok2("169.254.169.253"));

  // Unspecified, multicast and broadcast are never opened, not even by a covering CIDR.
  auto all = AddressPolicy::parse({"0.0.0.0/0", "::/0"});
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->check("h", boost::asio::ip::make_address("10.0.0.1")));
  EXPECT_FALSE(all->check("h", boost::asio::ip::make_address("0.0.0.0")));
  EXPECT_FALSE(all->check("h", boost::asio::ip::make_address("224.0.0.1")));
  EXPECT_FALSE(all->check("h", boost::asio::ip::make_address("255.255.255.255")));
  EXPECT_FALSE(all->check("h", boost::asio::ip::make_address("::")));
}

TEST(Outbound, PolicyParseErrorsNameTheEntry) {
  auto bad = AddressPolicy::parse({"loopback", "everything"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'everything' is not a range"), std::string::npos);
  EXPECT_FALSE(AddressPolicy::parse({"10.0.0.0/33"}));
  EXPECT_FALSE(AddressPolicy::parse({"10.0.0/8"}));
  EXPECT_FALSE(AddressPolicy::parse({"fd12::/129"}));
  EXPECT_FALSE(AddressPolicy::parse({"10.0.0.0/"}));
}

// ---- request rules --------------------------------------------------------------------------

using Headers = std::vector<std::pair<std::string, std::string>>;

TEST(Outbound, RequestRulesRefuseInjection) {
  const std::string url = "https://api.example.com/x";
  EXPECT_TRUE(checkOutboundRequest("GET", url, {{"X-A", "a\tb c"}}, 0, 10));
  for (const char* value : {"a\r\nX-B: 1", "a\nb", "a\rb", "a\x01b", "a\x7f"}) {
    auto s = checkOutboundRequest("GET", url, {{"X-A", value}}, 0, 10);
    ASSERT_FALSE(s) << value;
    EXPECT_NE(s.error().message.find("control character"), std::string::npos);
  }
  EXPECT_FALSE(checkOutboundRequest("GET", url, {{"X-A", std::string("a\0b", 3)}}, 0, 10));
  for (const char* name : {"", "X A", "X-A:", "X-A\r\nHost", "X\"A", "X(A)", "\xc3\xa9"})
    EXPECT_FALSE(checkOutboundRequest("GET", url, {{name, "v"}}, 0, 10)) << name;
  for (const char* method : {"", "G T", "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET", "GET\n"})
    EXPECT_FALSE(checkOutboundRequest(method, url, {}, 0, 10)) << method;
  EXPECT_TRUE(checkOutboundRequest("PROPFIND", url, {}, 0, 10));
  EXPECT_FALSE(checkOutboundRequest("GET", "https://a.example.com/x\r\nHost: b", {}, 0, 10));
  EXPECT_FALSE(checkOutboundRequest("GET", "https://a.example.com/x y", {}, 0, 10));
}

TEST(Outbound, PlatformHeadersAreRefused) {
  for (const char* name :
       {"Host", "host", "HOST", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
        "Proxy-Connection", "TE", "Trailer", "Upgrade"}) {
    auto s = checkOutboundRequest("GET", "https://a.example.com/", {{name, "x"}}, 0, 10);
    ASSERT_FALSE(s) << name;
    EXPECT_NE(s.error().message.find("set by the platform"), std::string::npos);
  }
  EXPECT_TRUE(checkOutboundRequest("GET", "https://a.example.com/",
                                   {{"X-Host", "x"}, {"Content-Type", "a/b"}, {"TEE", "x"}}, 0,
                                   10));
}

TEST(Outbound, RequestLimitsAtTheEdge) {
  const std::string base = "https://a.example.com/";
  EXPECT_TRUE(checkOutboundRequest(
      "GET", base + std::string(kMaxOutboundUrlChars - base.size(), 'a'), {}, 0, 10));
  auto long_url = checkOutboundRequest(
      "GET", base + std::string(kMaxOutboundUrlChars - base.size() + 1, 'a'), {}, 0, 10);
  ASSERT_FALSE(long_url);
  EXPECT_EQ(long_url.error().code, ErrorCode::kTooLarge);

  Headers many;
  for (std::size_t i = 0; i < kMaxOutboundHeaders; ++i)
    many.push_back({"X-" + std::to_string(i), "v"});
  EXPECT_TRUE(checkOutboundRequest("GET", base, many, 0, 10));
  many.push_back({"X-one-more", "v"});
  EXPECT_EQ(checkOutboundRequest("GET", base, many, 0, 10).error().code, ErrorCode::kTooLarge);

  Headers big = {{"X-A", std::string(kMaxOutboundHeaderBytes - 3, 'v')}};
  EXPECT_TRUE(checkOutboundRequest("GET", base, big, 0, 10));
  big[0].second.push_back('v');
  EXPECT_EQ(checkOutboundRequest("GET", base, big, 0, 10).error().code, ErrorCode::kTooLarge);

  EXPECT_TRUE(checkOutboundRequest("POST", base, {}, 1000, 1000));
  EXPECT_EQ(checkOutboundRequest("POST", base, {}, 1001, 1000).error().code, ErrorCode::kTooLarge);
}

// ---- HttpClient -----------------------------------------------------------------------------

// One-shot HTTP server on 127.0.0.1: counts the connections it accepted.
class OneShotServer {
 public:
  OneShotServer() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] {
      boost::asio::ip::tcp::socket sock(io_);
      boost::system::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) return;
      ++accepted_;
      char buf[4096];
      (void)sock.read_some(boost::asio::buffer(buf), ec);
      std::string res = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      boost::asio::write(sock, boost::asio::buffer(res), ec);
    });
  }
  ~OneShotServer() {
    stop_ = true;
    boost::system::error_code ec;
    boost::asio::ip::tcp::socket s(io_);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
  }
  unsigned short port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

Result<HttpResponse> fetchSync(HttpClient& client, HttpRequest r) {
  std::promise<Result<HttpResponse>> p;
  client.fetch(std::move(r), [&](Result<HttpResponse> res) { p.set_value(std::move(res)); });
  return p.get_future().get();
}

TEST(HttpClient, RefusesLoopbackAfterResolutionWithoutConnecting) {
  OneShotServer server;
  HttpClient closed(1, 1 << 20, AddressPolicy{});
  for (std::string host : {"localhost", "127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"}) {
    HttpRequest r;
    r.url = "http://" + host + ":" + std::to_string(server.port()) + "/";
    auto res = fetchSync(closed, r);
    ASSERT_FALSE(res) << host;
    EXPECT_EQ(res.error().code, ErrorCode::kForbidden) << res.error().message;
    EXPECT_NE(res.error().message.find("loopback"), std::string::npos);
  }
  EXPECT_EQ(server.accepted(), 0);

  HttpClient open(1, 1 << 20, *AddressPolicy::parse({"loopback"}));
  HttpRequest r;
  r.url = "http://localhost:" + std::to_string(server.port()) + "/";
  auto res = fetchSync(open, r);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->body, "ok");
  EXPECT_EQ(server.accepted(), 1);
}

TEST(HttpClient, RefusesInjectedHeadersBeforeConnecting) {
  OneShotServer server;
  HttpClient open(1, 1 << 20, *AddressPolicy::parse({"loopback"}));
  HttpRequest r;
  r.url = "http://localhost:" + std::to_string(server.port()) + "/";
  r.headers = {{"X-A", "a\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"}};
  auto res = fetchSync(open, r);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, ErrorCode::kInvalid);
  r.headers = {{"Host", "evil.test"}};
  EXPECT_FALSE(fetchSync(open, r));
  EXPECT_EQ(server.accepted(), 0);
}

TEST(HttpClient, HostOf) {
  EXPECT_EQ(*HttpClient::hostOf("https://api.example.com:8443/x?y=1"), "api.example.com");
  EXPECT_FALSE(HttpClient::hostOf("ftp://example.com/").has_value());
  EXPECT_FALSE(HttpClient::hostOf("not a url").has_value());
}

class CountingTerminator final : public Terminator {
 public:
  void terminate() override { ++count; }
  std::atomic<int> count{0};
};

TEST(Watchdog, FiresAtDeadlineOnly) {
  Watchdog w;
  CountingTerminator t;
  {
    auto scope = w.enterJs(t, std::chrono::steady_clock::now() + std::chrono::seconds(60));
    EXPECT_FALSE(scope.exit());
  }
  auto scope = w.enterJs(t, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
  for (int i = 0; i < 200 && t.count == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(scope.exit());
  EXPECT_EQ(t.count, 1);
  EXPECT_EQ(w.firedCount(), 1u);
  // After exit, a passed deadline no longer fires.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(t.count, 1);
}

TEST(Watchdog, EarlierDeadlineWakesIt) {
  Watchdog w;
  CountingTerminator slow, fast;
  auto a = w.enterJs(slow, std::chrono::steady_clock::now() + std::chrono::seconds(60));
  auto b = w.enterJs(fast, std::chrono::steady_clock::now() + std::chrono::milliseconds(10));
  for (int i = 0; i < 200 && fast.count == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(fast.count, 1);
  EXPECT_EQ(slow.count, 0);
}

}  // namespace
}  // namespace parley::functions::engine
