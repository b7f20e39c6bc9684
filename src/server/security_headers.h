#pragma once

// The security headers every HTTP response of the server carries: static files, REST, errors,
// health, metrics, login, WebSocket upgrade answers (the network layer adds them to whatever
// the router returns, so no route can forget them).
//
//   Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self';
//     img-src 'self' https: data:; font-src 'self'; connect-src 'self' ws(s)://<host>;
//     manifest-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none';
//     frame-ancestors 'none'
//   X-Content-Type-Options: nosniff
//   Referrer-Policy: no-referrer
//   X-Frame-Options: DENY            (frame-ancestors for browsers without CSP 2)
//
// No inline script, no eval, no inline style: the console's JavaScript and CSS are files from
// its own origin; the card renderer's and the code editor's styles are set through the CSSOM
// (web/README.md). Images may come from any https: host (structured-content images; the server
// checks them against the account's allowlist) and data: (the favicon).
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parley::server {

// Whether the request arrived over TLS (decides ws: or wss: for connect-src).
enum class Transport { kPlain, kTls };

// The policy for a response to a request with Host `host`. The WebSocket origin of that host is
// added to connect-src when `host` is a plain host[:port] (letters, digits, '.', '-', or an
// IPv6 literal in brackets, with an optional port); any other Host adds nothing.
std::string contentSecurityPolicy(std::string_view host, Transport transport);

// Every security header, in order: Content-Security-Policy, X-Content-Type-Options,
// Referrer-Policy, X-Frame-Options.
std::vector<std::pair<std::string, std::string>> securityHeaders(std::string_view host,
                                                                 Transport transport);

}  // namespace parley::server
