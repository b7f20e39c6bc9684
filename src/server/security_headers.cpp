#include "server/security_headers.h"

#include <cctype>

namespace parley::server {

namespace {

bool validPort(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// host[:port] with a DNS-like name or IPv4, or [IPv6][:port]; nothing a header or a policy
// could be bent with (no spaces, ';', ',', quotes or '*').
bool plainHost(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  std::string_view name = h;
  std::string_view port;
  if (h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : h.substr(1, close - 1))
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    std::string_view rest = h.substr(close + 1);
    if (rest.empty()) return close > 1;
    return rest.front() == ':' && validPort(rest.substr(1)) && close > 1;
  }
  if (auto colon = h.find(':'); colon != std::string_view::npos) {
    name = h.substr(0, colon);
    port = h.substr(colon + 1);
    if (!validPort(port)) return false;
  }
  if (name.empty() || name.front() == '.' || name.front() == '-') return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') return false;
  return true;
}

}  // namespace

std::string contentSecurityPolicy(std::string_view host, Transport transport) {
  std::string connect = "connect-src 'self'";
  if (plainHost(host)) {
    connect += transport == Transport::kTls ? " wss://" : " ws://";
    connect += host;
  }
  return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
         "font-src 'self'; " +
         connect +
         "; manifest-src 'self'; form-action 'self'; object-src 'none'; base-uri 'none'; "
         "frame-ancestors 'none'";
}

std::vector<std::pair<std::string, std::string>> securityHeaders(std::string_view host,
                                                                 Transport transport) {
  return {{"Content-Security-Policy", contentSecurityPolicy(host, transport)},
          {"X-Content-Type-Options", "nosniff"},
          {"Referrer-Policy", "no-referrer"},
          {"X-Frame-Options", "DENY"}};
}

}  // namespace parley::server
