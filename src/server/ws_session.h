#pragma once

// The WebSocket session (private to server/): what a connection becomes once the HTTP session
// read an upgrade request and the app accepted it. The session class itself stays in
// ws_session.cpp; see server/README.md (Threading) for its write queue, inbox and idle handling.

#include <boost/beast/http.hpp>
#include <functional>
#include <memory>

#include "server/http_types.h"
#include "server/net_state.h"

namespace parley::server::net {

// Makes the protocol handler bound to an accepted WebSocket (UpgradeDecision::make).
using WsHandlerFactory = std::function<std::shared_ptr<WsHandler>(std::shared_ptr<WsTransport>)>;

// Takes over `stream` (its timeouts off) after the HTTP session read the upgrade request `req`
// and the app accepted it: completes the handshake (answering with the security headers for the
// request's Host), binds the handler `make` builds to the new session, tracks the session in
// `st` (draining or stopping it at once when the Net already is) and runs its read loop until
// the connection ends. On the connection's strand.
asio::awaitable<void> runWebSocket(std::shared_ptr<NetState> st, PlainStream stream,
                                   beast::http::request<beast::http::string_body> req,
                                   WsHandlerFactory make);
asio::awaitable<void> runWebSocket(std::shared_ptr<NetState> st, TlsStream stream,
                                   beast::http::request<beast::http::string_body> req,
                                   WsHandlerFactory make);

}  // namespace parley::server::net
