#pragma once

// The HTTP session (private to server/): one accepted connection serving HTTP/1.1 requests to
// the HttpApp until it closes or upgrades to a WebSocket (ws_session.h). The session class
// itself stays in http_session.cpp.

#include <memory>
#include <string>

#include "server/net_state.h"

namespace parley::server::net {

// Starts the session of an accepted connection (for TLS the handshake is its first step) and
// tracks it in `st` until it ends. `stream`'s executor must be the connection's strand: the
// session runs there. `local_host` is the listener's "HOST:PORT" (HttpRequest::local_host).
// Any thread.
void spawnHttpSession(std::shared_ptr<NetState> st, PlainStream stream, std::string local_host);
void spawnHttpSession(std::shared_ptr<NetState> st, TlsStream stream, std::string local_host);

}  // namespace parley::server::net
