// The network layer's WebSocket writes: frames queued in a burst (from the connection's strand or
// from other threads, as the engine's completions are) arrive complete and in order, and a close
// requested while frames are still queued is sent after them.

#include "server/net.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/http_types.h"
#include "server/metrics.h"

namespace parley::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

// On "burst N" it queues frames 0..N-1 from its strand, then asks for a close (4000, "done").
// On "threads N" another thread queues them (and the close) while the strand is free.
// On "late N" it queues the burst and the close from its strand, then one more frame, which
// must not be sent (a transport ignores sends after close()).
// On "posted N" each frame is sent from its own handler posted to the strand, with a frame sent
// directly from the strand before and after posting them.
// On "mixed N" another thread sends the even frames and posts the sending of the odd ones.
// On "thread N" it answers with a number naming the thread it runs on (and stays open).
class BurstHandler final : public WsHandler {
 public:
  explicit BurstHandler(std::shared_ptr<WsTransport> t) : t_(std::move(t)) {}
  void onOpen() override {}
  void onFrame(std::string text) override {
    const auto space = text.find(' ');
    const int n = std::stoi(text.substr(space + 1));
    auto burst = [t = t_, n] {
      for (int i = 0; i < n; ++i) t->send("frame " + std::to_string(i));
      t->close(4000, "done");
    };
    if (text.starts_with("thread ")) {
      t_->send(std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())));
    } else if (text.starts_with("threads")) {
      std::thread(burst).detach();
    } else if (text.starts_with("mixed")) {
      // From another thread, frames alternately sent and posted (sent from the strand), then
      // the close: all in the order that thread made them.
      std::thread([t = t_, n] {
        for (int i = 0; i < n; ++i) {
          if (i % 2 == 0) {
            t->send("frame " + std::to_string(i));
          } else {
            t->post([t, i] { t->send("frame " + std::to_string(i)); });
          }
        }
        t->close(4000, "done");
      }).detach();
    } else if (text.starts_with("late")) {
      burst();
      t_->send("late");
    } else if (text.starts_with("posted")) {
      t_->send("first");
      for (int i = 0; i < n; ++i) t_->post([t = t_, i] { t->send("frame " + std::to_string(i)); });
      t_->send("second");
      t_->post([t = t_] { t->close(4000, "done"); });
    } else {
      burst();
    }
  }
  void onClose() override {}

 private:
  std::shared_ptr<WsTransport> t_;
};

class BurstApp final : public HttpApp {
 public:
  void handle(HttpRequest, HttpDone done) override {
    HttpResponse r;
    r.status = 404;
    done(std::move(r));
  }
  void upgrade(HttpRequest, std::function<void(UpgradeDecision)> done) override {
    UpgradeDecision d;
    d.make = [](std::shared_ptr<WsTransport> t) { return std::make_shared<BurstHandler>(t); };
    done(std::move(d));
  }
};

// Connects, sends `request`, and reads every frame until the server's close.
struct Received {
  std::vector<std::string> frames;
  int close_code = 0;
  std::string close_reason;
};
// Connects `ws` to the test server at `host_port` and makes its WebSocket handshake.
void connectClient(websocket::stream<beast::tcp_stream>& ws, const std::string& host_port) {
  asio::ip::tcp::resolver resolver(ws.get_executor());
  const auto colon = host_port.rfind(':');
  beast::get_lowest_layer(ws).connect(
      resolver.resolve(host_port.substr(0, colon), host_port.substr(colon + 1)));
  ws.handshake(host_port, "/ws");
}

Received roundTrip(const std::string& host_port, const std::string& request) {
  asio::io_context io;
  websocket::stream<beast::tcp_stream> ws(io);
  connectClient(ws, host_port);
  ws.text(true);
  ws.write(asio::buffer(request));
  Received r;
  for (;;) {
    beast::flat_buffer buf;
    beast::error_code ec;
    ws.read(buf, ec);
    if (ec == websocket::error::closed) {
      r.close_code = ws.reason().code;
      r.close_reason = std::string(ws.reason().reason.c_str());
      break;
    }
    if (ec) {
      ADD_FAILURE() << "read failed: " << ec.message();
      break;
    }
    r.frames.push_back(beast::buffers_to_string(buf.data()));
  }
  return r;
}

// Frames "frame 0".."frame n-1" in order, then the close 4000.
void expectBurstThenClose(const Received& r, int n) {
  ASSERT_EQ(r.frames.size(), static_cast<std::size_t>(n)) << "burst of " << n;
  for (int i = 0; i < n; ++i) EXPECT_EQ(r.frames[i], "frame " + std::to_string(i));
  EXPECT_EQ(r.close_code, 4000);
}

class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NetOptions o;
    o.http_listen = "127.0.0.1:0";
    o.https_listen = "";
    o.threads = 2;
    configure(o);
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

  virtual void configure(NetOptions&) {}

  BurstApp app_;
  Metrics metrics_;
  std::unique_ptr<Net> net_;
  std::string host_;
};

// The value of one of the Metrics' own counters in its exposition text.
long metricValue(const Metrics& m, const std::string& name) {
  const std::string text = m.text();
  const auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stol(text.substr(at + name.size() + 2));
}

TEST_F(NetTest, ABurstFromTheStrandArrivesInOrderAndTheCloseAfterIt) {
  for (int n : {1, 2, 3, 50, 1000}) {
    Received r = roundTrip(host_, "burst " + std::to_string(n));
    expectBurstThenClose(r, n);
    EXPECT_EQ(r.close_reason, "done");
  }
}

TEST_F(NetTest, ABurstFromAnotherThreadArrivesInOrderAndTheCloseAfterIt) {
  for (int n : {2, 7, 300}) {
    expectBurstThenClose(roundTrip(host_, "threads " + std::to_string(n)), n);
  }
}

TEST_F(NetTest, SendsPostsAndTheCloseFromAnotherThreadKeepTheirOrder) {
  for (int n : {1, 2, 9, 500}) {
    expectBurstThenClose(roundTrip(host_, "mixed " + std::to_string(n)), n);
  }
}

TEST_F(NetTest, AFrameSentFromTheStrandAfterCloseIsNotSent) {
  for (int n : {0, 1, 40}) {
    expectBurstThenClose(roundTrip(host_, "late " + std::to_string(n)), n);
  }
}

// A frame sent on the strand is queued at once; handlers posted meanwhile send after it.
TEST_F(NetTest, FramesSentOnTheStrandGoBeforeFramesOfHandlersPostedMeanwhile) {
  for (int n : {1, 5}) {
    Received r = roundTrip(host_, "posted " + std::to_string(n));
    std::vector<std::string> want{"first", "second"};
    for (int i = 0; i < n; ++i) want.push_back("frame " + std::to_string(i));
    EXPECT_EQ(r.frames, want);
    EXPECT_EQ(r.close_code, 4000);
  }
}

// Connections are dealt out to the io threads in turn (each has its own io_context), and
// everything of one connection runs on its thread.
TEST_F(NetTest, ConnectionsAreDealtOutToTheIoThreadsInTurnAndStayOnTheirs) {
  asio::io_context io;
  std::vector<std::unique_ptr<websocket::stream<beast::tcp_stream>>> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<websocket::stream<beast::tcp_stream>>(io));
    connectClient(*conns.back(), host_);
    conns.back()->text(true);
  }
  auto threadOf = [](websocket::stream<beast::tcp_stream>& ws) {
    ws.write(asio::buffer(std::string("thread 0")));
    beast::flat_buffer buf;
    ws.read(buf);
    return beast::buffers_to_string(buf.data());
  };
  std::vector<std::string> first;
  for (auto& c : conns) first.push_back(threadOf(*c));
  for (std::size_t i = 0; i < conns.size(); ++i)
    for (int again = 0; again < 3; ++again) EXPECT_EQ(threadOf(*conns[i]), first[i]) << i;
  // Two io threads (NetTest's options): 0 and 2 on one, 1 and 3 on the other.
  EXPECT_NE(first[0], first[1]);
  EXPECT_EQ(first[0], first[2]);
  EXPECT_EQ(first[1], first[3]);
}

// ---- Idle connections (a 2 s idle timeout: ping after 1 s of silence, close after 2 s) ----

class NetIdleTest : public NetTest {
 protected:
  void configure(NetOptions& o) override {
    o.ws_idle_timeout = std::chrono::seconds(2);
    o.allow_short_ws_idle_timeout = true;
  }
};

// A client WebSocket on its own io_context and thread.
struct IdleClient {
  explicit IdleClient(const std::string& host_port) : ws(io) {
    connectClient(ws, host_port);
    ws.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::ping) ++pings;
    });
  }
  // Starts reading one frame into `buf` (Beast answers pings meanwhile); `io` runs it.
  void startRead() {
    ws.async_read(buf, [this](beast::error_code ec, std::size_t) {
      read_ec = ec;
      read_done = true;
    });
  }
  asio::io_context io;
  websocket::stream<beast::tcp_stream> ws;
  std::atomic<int> pings{0};
  beast::flat_buffer buf;
  beast::error_code read_ec;
  bool read_done = false;
};

TEST_F(NetIdleTest, ASilentPeerThatAnswersPingsStaysOpen) {
  IdleClient c(host_);
  // Reading (so Beast answers the server's pings with pongs) for 1.6 idle timeouts.
  c.startRead();
  c.io.run_for(std::chrono::milliseconds(3200));
  ASSERT_FALSE(c.read_done) << "the server ended the connection: " << c.read_ec.message();
  EXPECT_GE(c.pings.load(), 1) << "no ping after 1.6 idle timeouts of silence";
  EXPECT_EQ(metricValue(metrics_, "parley_ws_idle_closes_total"), 0);
  EXPECT_GE(metricValue(metrics_, "parley_ws_idle_pings_total"), 1);
  // Still open both ways: a request gets its answer.
  c.ws.text(true);
  c.ws.write(asio::buffer(std::string("burst 1")));
  c.io.restart();
  c.io.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(c.read_done);
  ASSERT_FALSE(c.read_ec) << c.read_ec.message();
  EXPECT_EQ(beast::buffers_to_string(c.buf.data()), "frame 0");
}

TEST_F(NetIdleTest, APeerThatSendsNothingAndAnswersNoPingIsClosedAfterTheIdleTimeout) {
  IdleClient c(host_);
  // Not reading: no pong goes back. Half the timeout later it has been pinged, not closed.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(metricValue(metrics_, "parley_ws_idle_closes_total"), 0) << "closed too early";
  EXPECT_EQ(metricValue(metrics_, "parley_ws_idle_pings_total"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(metricValue(metrics_, "parley_ws_idle_closes_total"), 1);
  // The client sees the ping that was sent, then the end of the connection.
  c.startRead();
  c.io.run_for(std::chrono::seconds(3));
  ASSERT_TRUE(c.read_done) << "the connection is still open";
  EXPECT_TRUE(c.read_ec) << "read a frame from a connection the server closed";
  EXPECT_EQ(c.pings.load(), 1);
}

TEST(NetOptionsTest, AnIdleTimeoutUnder90SecondsIsRefused) {
  BurstApp app;
  Metrics metrics;
  NetOptions o;
  o.http_listen = "127.0.0.1:0";
  o.https_listen = "";
  o.ws_idle_timeout = std::chrono::seconds(89);
  auto net = makeNet(o, app, metrics);
  ASSERT_FALSE(net);
  EXPECT_NE(net.error().message.find("at least 90 s"), std::string::npos) << net.error().message;
  o.ws_idle_timeout = std::chrono::seconds(90);
  EXPECT_TRUE(makeNet(o, app, metrics));
}

}  // namespace
}  // namespace parley::server
