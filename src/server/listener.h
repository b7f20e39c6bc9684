#pragma once

// A listening socket (private to server/): plain HTTP or HTTPS, and the loop that accepts its
// connections.

#include <memory>
#include <string>

#include "common/result.h"
#include "server/net.h"
#include "server/net_state.h"
#include "server/security_headers.h"

namespace parley::server::net {

// One bound acceptor on the Net's first io context. Its accept loop deals each accepted
// connection out to the next io context (round robin, NetState::connectionContext), on a new
// strand there, and starts its HTTP session (spawnHttpSession). Owned by the Net; start() and
// close() run on the first context's thread (or before the io threads run); the acceptor must
// outlive the accept loop (the Net closes it and joins the io threads before destroying it).
class Listener {
 public:
  // Binds and listens on `hostport` ("HOST:PORT"; port 0 picks a free port; "localhost" is
  // 127.0.0.1; an empty host is 0.0.0.0; IPv6 hosts in brackets). Invalid for a malformed
  // address, Unavailable when the address cannot be bound.
  static Result<std::unique_ptr<Listener>> bind(std::shared_ptr<NetState> st,
                                                const std::string& hostport, Transport transport);
  // The same over a socket bound ahead (bindListenSocket), which it takes.
  static Result<std::unique_ptr<Listener>> adopt(std::shared_ptr<NetState> st, ListenSocket& bound,
                                                 Transport transport);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The address it listens on, "HOST:PORT" ("[v6]:PORT" for IPv6).
  const std::string& host() const { return host_; }

  // Starts the accept loop (co_spawned on the acceptor's strand). Call once.
  void start();

  // Closes the acceptor: the accept loop ends.
  void close();

 private:
  Listener(std::shared_ptr<NetState> st, std::unique_ptr<tcp::acceptor> acceptor,
           Transport transport, std::string host)
      : st_(std::move(st)),
        acceptor_(std::move(acceptor)),
        transport_(transport),
        host_(std::move(host)) {}

  std::shared_ptr<NetState> st_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  const Transport transport_;
  const std::string host_;
};

}  // namespace parley::server::net
