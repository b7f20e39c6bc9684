#include "server/listener.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <utility>

#include "server/http_session.h"

namespace parley::server::net {
namespace {

using asio::awaitable;

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

// Accepts until the acceptor closes. `acc` must outlive the loop.
awaitable<void> acceptLoop(std::shared_ptr<NetState> st, tcp::acceptor& acc, Transport transport,
                           std::string host) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(asio::make_strand(st->connectionContext()), kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc.is_open() || st->stopping) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    boost::system::error_code ignore;
    sock.set_option(tcp::no_delay(true), ignore);
    if (transport == Transport::kTls) {
      spawnHttpSession(st, TlsStream(beast::tcp_stream(std::move(sock)), st->ssl_ctx), host);
    } else {
      spawnHttpSession(st, PlainStream(std::move(sock)), host);
    }
  }
}

}  // namespace

}  // namespace parley::server::net

namespace parley::server {

ListenSocket::~ListenSocket() {
  if (fd_ >= 0) ::close(fd_);
}

int ListenSocket::take() { return std::exchange(fd_, -1); }

Result<std::shared_ptr<ListenSocket>> bindListenSocket(const std::string& hostport) {
  using net::tcp;
  auto ep = net::parseEndpoint(hostport);
  if (!ep) return std::unexpected(ep.error());
  // Bound with an io_context of its own, then released from it: the Net's acceptor takes it.
  net::asio::io_context ioc;
  tcp::acceptor acc(ioc);
  boost::system::error_code ec;
  acc.open(ep->protocol(), ec);
  if (!ec) acc.set_option(net::asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(*ep, ec);
  if (!ec) acc.listen(net::asio::socket_base::max_listen_connections, ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot listen on {}: {}", hostport, ec.message()));
  std::string host = net::hostString(acc.local_endpoint());
  const bool v6 = ep->address().is_v6();
  const int fd = acc.release(ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot listen on {}: {}", hostport, ec.message()));
  return std::make_shared<ListenSocket>(fd, v6, std::move(host));
}

}  // namespace parley::server

namespace parley::server::net {

Result<std::unique_ptr<Listener>> Listener::adopt(std::shared_ptr<NetState> st, ListenSocket& bound,
                                                  Transport transport) {
  const int fd = bound.take();
  if (fd < 0) return invalid("listening socket " + bound.host() + " was already taken");
  auto acc = std::make_unique<tcp::acceptor>(asio::make_strand(st->ioc));
  boost::system::error_code ec;
  acc->assign(bound.v6() ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot listen on {}: {}", bound.host(), ec.message()));
  }
  return std::unique_ptr<Listener>(
      new Listener(std::move(st), std::move(acc), transport, bound.host()));
}

Result<std::unique_ptr<Listener>> Listener::bind(std::shared_ptr<NetState> st,
                                                 const std::string& hostport, Transport transport) {
  auto ep = parseEndpoint(hostport);
  if (!ep) return std::unexpected(ep.error());
  auto acc = std::make_unique<tcp::acceptor>(asio::make_strand(st->ioc));
  boost::system::error_code ec;
  acc->open(ep->protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(*ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot listen on {}: {}", hostport, ec.message()));
  std::string host = hostString(acc->local_endpoint());
  return std::unique_ptr<Listener>(
      new Listener(std::move(st), std::move(acc), transport, std::move(host)));
}

void Listener::start() {
  asio::co_spawn(acceptor_->get_executor(), acceptLoop(st_, *acceptor_, transport_, host_),
                 [](std::exception_ptr e) { logException(e, "acceptor"); });
}

void Listener::close() {
  boost::system::error_code ec;
  acceptor_->close(ec);
}

}  // namespace parley::server::net
