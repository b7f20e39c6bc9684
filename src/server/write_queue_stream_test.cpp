// WriteQueueStream under a real Beast server stream on a real socket, read by Beast's client:
// the frames it encodes itself are well formed at every length boundary, and Beast's own writes
// (handshake, ping, close) keep their place among them, also while a large write is stuck
// behind a peer that does not read.

#include "server/write_queue_stream.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace parley::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using ServerWs = websocket::stream<WriteQueueStream<beast::tcp_stream>>;

// One server-side WebSocket on its own io thread, accepted from a client connected in the test.
class Pair : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    client_.next_layer().connect(acceptor.local_endpoint());
    server_ = std::make_shared<ServerWs>(beast::tcp_stream(acceptor.accept()));
    out().setOwner(server_);
    out().onWritten([this](beast::error_code ec) { write_errors_.push_back(ec); });
    std::promise<beast::error_code> accepted;
    server_->async_accept([&](beast::error_code ec) { accepted.set_value(ec); });
    thread_ = std::thread([this] { io_.run(); });
    client_.handshake("127.0.0.1", "/");
    // The client has the 101 before the server's accept completes: wait for it, as the server's
    // session does before it writes.
    const auto ec = accepted.get_future().get();
    ASSERT_FALSE(ec) << ec.message();
  }
  void TearDown() override {
    work_.reset();
    asio::post(io_, [this] { server_.reset(); });
    thread_.join();
  }

  WriteQueueStream<beast::tcp_stream>& out() { return server_->next_layer(); }

  // Runs `fn` on the server's thread and waits for it.
  template <class Fn>
  void onServer(Fn fn) {
    std::promise<void> done;
    asio::post(io_, [&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

  std::string readFrame() {
    beast::flat_buffer buf;
    client_.read(buf);
    EXPECT_TRUE(client_.got_text());
    return beast::buffers_to_string(buf.data());
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  asio::io_context client_io_;
  websocket::stream<tcp::socket> client_{client_io_};
  std::shared_ptr<ServerWs> server_;
  std::vector<beast::error_code> write_errors_;  // server thread only
  std::thread thread_;
};

TEST_F(Pair, FramesOfEveryLengthEncodingArriveIntact) {
  // 125/126 and 65535/65536 are where the length field grows (7 bits, 16 bits, 64 bits).
  const std::vector<std::size_t> sizes = {0, 1, 125, 126, 127, 65535, 65536, 300000};
  std::vector<std::string> sent;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::string s(sizes[i], 'a');
    for (std::size_t j = 0; j < s.size(); ++j) s[j] = static_cast<char>('a' + (i + j) % 26);
    sent.push_back(std::move(s));
  }
  onServer([&] {
    for (const auto& s : sent) out().appendTextFrame(s);
    out().flush();
  });
  for (const auto& s : sent) {
    const auto got = readFrame();
    ASSERT_EQ(got.size(), s.size());
    EXPECT_EQ(got, s);
  }
}

TEST_F(Pair, BeastControlFramesKeepTheirPlaceAmongQueuedFrames) {
  // A ping written by Beast between two bursts, then Beast's close after a third: the client
  // must see burst one, the ping, burst two, then the close with its code.
  std::vector<std::string> pings_after;  // frames the client had read when each ping arrived
  int frames_read = 0;
  client_.control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::ping)
      pings_after.push_back(std::string(payload) + "@" + std::to_string(frames_read));
  });
  onServer([&] {
    out().appendTextFrame("one");
    out().appendTextFrame("two");
    out().flush();  // in flight: the ping below waits behind it in the queue
    server_->async_ping("p1", [keep = server_](beast::error_code ec) { EXPECT_FALSE(ec); });
    out().appendTextFrame("three");
    out().flush();
    websocket::close_reason reason;
    reason.code = 4001;
    reason.reason = "bye";
    // The stream must outlive its operations (the close ends with a teardown of the socket).
    server_->async_close(reason, [keep = server_](beast::error_code) {});
  });
  std::vector<std::string> got;
  for (;;) {
    beast::flat_buffer buf;
    beast::error_code ec;
    client_.read(buf, ec);
    if (ec == websocket::error::closed) break;
    ASSERT_FALSE(ec) << ec.message();
    got.push_back(beast::buffers_to_string(buf.data()));
    ++frames_read;
  }
  EXPECT_EQ(got, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(pings_after, (std::vector<std::string>{"p1@2"}));
  EXPECT_EQ(client_.reason().code, 4001);
  EXPECT_EQ(client_.reason().reason, "bye");
}

TEST_F(Pair, ABackloggedPeerGetsEverythingInOrderOnceItReads) {
  // 8 MiB cannot sit in the socket buffers: the write stays in flight while more frames and a
  // Beast ping queue up behind it. Nothing is read until all of it is queued.
  const std::string big(8 << 20, 'x');
  std::promise<void> queued;
  std::string pinged;
  client_.control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::ping) pinged = std::string(payload);
  });
  asio::post(io_, [&] {
    out().appendTextFrame(big);
    out().flush();
    EXPECT_TRUE(out().writing());
    server_->async_ping("behind", [keep = server_](beast::error_code ec) { EXPECT_FALSE(ec); });
    for (int i = 0; i < 100; ++i) out().appendTextFrame("after " + std::to_string(i));
    out().flush();  // a write is in flight: these follow it
    EXPECT_GT(out().queuedBytes(), big.size());
    queued.set_value();
  });
  queued.get_future().wait();
  EXPECT_EQ(readFrame(), big);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(readFrame(), "after " + std::to_string(i));
  EXPECT_EQ(pinged, "behind");
  onServer([&] {
    EXPECT_FALSE(out().writing());
    EXPECT_EQ(out().queuedBytes(), 0u);
    for (auto ec : write_errors_) EXPECT_FALSE(ec) << ec.message();
    EXPECT_FALSE(write_errors_.empty());
  });
}

TEST_F(Pair, AfterAWriteFailsLaterWritesFailWithTheSameError) {
  client_.next_layer().close();  // the peer is gone: the server's writes hit a reset socket
  std::promise<beast::error_code> ping_result;
  // Write until the kernel reports the reset (the first writes after a close may still succeed).
  for (int tries = 0; tries < 200; ++tries) {
    bool failed = false;
    onServer([&] {
      for (auto ec : write_errors_) failed = failed || ec;
      if (!failed) {
        out().appendTextFrame(std::string(64 << 10, 'z'));
        out().flush();
      }
    });
    if (failed) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  onServer([&] {
    server_->async_ping("late",
                        [&, keep = server_](beast::error_code ec) { ping_result.set_value(ec); });
  });
  const auto ec = ping_result.get_future().get();
  EXPECT_TRUE(ec) << "a write after the failure succeeded";
  onServer([&] {
    bool failed = false;
    for (auto e : write_errors_) failed = failed || e;
    EXPECT_TRUE(failed);
    EXPECT_FALSE(out().writing());
    EXPECT_EQ(out().queuedBytes(), 0u);
  });
}

}  // namespace
}  // namespace parley::server
