#pragma once

// WriteQueueStream: the layer under a server's Beast WebSocket stream through which every byte
// it sends passes, in order, so that whole bursts of frames leave in one write.
//
// Beast writes one message per async_write, through a chain of composed operations, and sends
// its own control frames (pongs, keep-alive pings, the close frame) when it decides to. A burst of
// notifications therefore cost one write system call per frame plus Beast's machinery per frame.
// Here the session encodes its text frames itself (appendTextFrame: a server's frames are not
// masked, and permessage-deflate is never negotiated) into the same byte queue that Beast's
// writes go into, and one socket write carries everything queued. Beast's writes complete only
// once their bytes are on the socket, so its close handshake and teardown keep their order.
//
// Threading: every member is called on the stream's strand (the session's), as Beast requires of
// its next layer. Lifetime: the write in flight holds the owner set with setOwner (the session),
// so the layer outlives it.

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace parley::server {

template <class Next>
class WriteQueueStream {
 public:
  using next_layer_type = Next;
  using executor_type = boost::beast::executor_type<Next>;

  explicit WriteQueueStream(Next&& next) : next_(std::move(next)) {}

  executor_type get_executor() noexcept { return next_.get_executor(); }
  Next& next_layer() noexcept { return next_; }
  const Next& next_layer() const noexcept { return next_; }

  // Keeps the owner (the object holding this layer) alive while a write is in flight.
  void setOwner(std::weak_ptr<void> owner) { owner_ = std::move(owner); }
  // Called on the strand after each socket write finishes (error or not).
  void onWritten(std::function<void(boost::beast::error_code)> fn) { on_written_ = std::move(fn); }

  // Appends one unmasked, unfragmented text frame (RFC 6455 §5.2) to the queue. flush() sends it.
  void appendTextFrame(std::string_view payload) {
    const std::uint64_t n = payload.size();
    char head[10];
    std::size_t len = 0;
    head[len++] = static_cast<char>(0x81);  // FIN, opcode 1 (text)
    if (n < 126) {
      head[len++] = static_cast<char>(n);
    } else if (n <= 0xffff) {
      head[len++] = static_cast<char>(126);
      head[len++] = static_cast<char>(n >> 8);
      head[len++] = static_cast<char>(n);
    } else {
      head[len++] = static_cast<char>(127);
      for (int shift = 56; shift >= 0; shift -= 8) head[len++] = static_cast<char>(n >> shift);
    }
    queued_.append(head, len);
    queued_.append(payload);
  }

  // Starts a socket write of everything queued, unless one is in flight (then it follows it).
  void flush() {
    if (writing_ || queued_.empty()) return;
    if (error_) {
      fail(error_);
      return;
    }
    auto keep = owner_.lock();
    if (!keep) return;  // the owner is going away: nothing will read the result
    writing_ = true;
    in_flight_.swap(queued_);
    queued_.clear();
    in_flight_waiters_.swap(queued_waiters_);
    queued_waiters_.clear();
    boost::asio::async_write(
        next_, boost::asio::buffer(in_flight_),
        [this, keep = std::move(keep)](boost::beast::error_code ec, std::size_t) { written(ec); });
  }

  bool writing() const { return writing_; }
  std::size_t queuedBytes() const { return queued_.size() + in_flight_.size(); }

  // AsyncReadStream: straight through.
  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return raw().async_read_some(buffers, std::forward<Handler>(handler));
  }

  // AsyncWriteStream: Beast's own writes (the handshake response, control frames) join the queue
  // and complete when their bytes have been written.
  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(boost::beast::error_code, std::size_t)>(
        [this](auto h, const ConstBuffers& b) {
          const std::size_t n = boost::asio::buffer_size(b);
          if (error_) {
            boost::asio::post(get_executor(),
                              boost::beast::bind_handler(std::move(h), error_, std::size_t{0}));
            return;
          }
          const std::size_t at = queued_.size();
          queued_.resize(at + n);
          boost::asio::buffer_copy(boost::asio::buffer(queued_.data() + at, n), b);
          queued_waiters_.emplace_back(
              [this, h = std::move(h), n](boost::beast::error_code ec) mutable {
                boost::asio::post(get_executor(),
                                  boost::beast::bind_handler(std::move(h), ec, ec ? 0 : n));
              });
          flush();
        },
        handler, buffers);
  }

 private:
  using Waiter = std::move_only_function<void(boost::beast::error_code)>;

  // Where bytes are read and written: a plain connection's socket itself (its tcp_stream's
  // timeouts and rate limits are not used under a WebSocket, which keeps its own timers, and
  // going around them saves a composed operation per read and write); otherwise (TLS) the next
  // layer.
  auto& raw() {
    if constexpr (std::is_same_v<Next, boost::beast::tcp_stream>) {
      return next_.socket();
    } else {
      return next_;
    }
  }

  void written(boost::beast::error_code ec) {
    writing_ = false;
    in_flight_.clear();
    auto done = std::move(in_flight_waiters_);
    in_flight_waiters_.clear();
    if (ec) {
      error_ = ec;
      for (auto& w : done) w(ec);
      fail(ec);
    } else {
      for (auto& w : done) w({});
    }
    if (on_written_) on_written_(ec);
    flush();
  }

  void fail(boost::beast::error_code ec) {
    queued_.clear();
    auto waiting = std::move(queued_waiters_);
    queued_waiters_.clear();
    for (auto& w : waiting) w(ec);
  }

  Next next_;
  std::weak_ptr<void> owner_;
  std::function<void(boost::beast::error_code)> on_written_;
  std::string queued_;     // bytes not yet handed to the socket
  std::string in_flight_;  // bytes of the write in flight
  std::vector<Waiter> queued_waiters_;
  std::vector<Waiter> in_flight_waiters_;
  boost::beast::error_code error_;  // the first write error: every later write fails with it
  bool writing_ = false;
};

// Beast's close handshake ends with a teardown of the next layer; by then the close frame has
// been written (its write completed), so the teardown goes straight to the layer below.
template <class Next>
void teardown(boost::beast::role_type role, WriteQueueStream<Next>& s,
              boost::beast::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, s.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(boost::beast::role_type role, WriteQueueStream<Next>& s, Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}

}  // namespace parley::server
