#pragma once

// Outbound-request policy for the Toolbelt HTTPClient: the domain allowlist (§4.9), the
// per-function rate limit (§4.3), the address ranges a function may not reach (checked after
// name resolution, see AddressPolicy) and the rules for what a function may put into a request
// (checkOutboundRequest). Plain C++ and Boost.Asio's address types; no I/O.

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/limit_peers.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace parley::functions::engine {

// The body LivePerson's emulator returns when a host is not allowlisted.
inline constexpr std::string_view kForbiddenBody =
    "You do not have access to the page or resource you are trying to reach\n";

// True when `host` is allowed by `allowlist`: an entry equal to the host (case-insensitive), or
// a one-level wildcard entry "*.example.com" that matches exactly one more label
// ("a.example.com", not "example.com" and not "a.b.example.com").
bool hostAllowed(std::string_view host, const std::vector<std::string>& allowlist);

// Fixed one-second windows (of the clock's time) per key. With `peers` (a cluster), every
// request counted is sent to the other nodes under `name` with the second it was made in, and
// theirs are counted here in the current window (when made in this second or the one before by
// this node's clock, or in the next: skew within a second), so a key makes at most about
// `per_second` requests a second across the nodes (what crosses the bus while a node decides is
// the slack). Thread-safe.
class RateLimiter {
 public:
  RateLimiter(const Clock& clock, int per_second, std::shared_ptr<LimitPeers> peers = nullptr,
              std::string name = "function-http");
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;
  // Counts one request for `key`; false when the key already made `per_second` in this second.
  bool tryAcquire(const std::string& key);
  // Requests of other nodes counted here (tests and metrics).
  std::uint64_t peerEvents() const;

 private:
  struct Window {
    TimeMs second = 0;
    int count = 0;
  };
  // The window of `key` for `second`, a new one when the key's is older. REQUIRES: room made.
  Window& windowOf(const std::string& key, TimeMs second) PARLEY_REQUIRES(mu_);
  void receive(std::string_view event);

  const Clock& clock_;
  const int per_second_;
  const std::shared_ptr<LimitPeers> peers_;
  const std::string name_;
  mutable Mutex mu_;
  std::unordered_map<std::string, Window> windows_ PARLEY_GUARDED_BY(mu_);
  std::uint64_t peer_events_ PARLEY_GUARDED_BY(mu_) = 0;
};

// ---- Addresses ----------------------------------------------------------------------------

// What an IP address is, for the outbound policy. Everything but kPublic is refused unless the
// operator opens it (AddressPolicy).
enum class AddressRange {
  kPublic,
  kLoopback,     // 127.0.0.0/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16 (RFC 1918), fc00::/7 (RFC 4193), fec0::/10,
                 // 64:ff9b:1::/48
  kLinkLocal,    // 169.254.0.0/16, fe80::/10
  kCgnat,        // 100.64.0.0/10 (RFC 6598)
  kMetadata,     // cloud instance metadata and platform endpoints: 169.254.169.254,
                 // 169.254.170.2, 168.63.129.16, 100.100.100.200, fd00:ec2::254
  kUnspecified,  // 0.0.0.0/8, ::
  kMulticast,    // 224.0.0.0/4, ff00::/8
  kBroadcast,    // 255.255.255.255
  kReserved,     // the other special-purpose ranges of RFC 6890 (documentation, benchmarking,
                 // 240/4, IETF protocol assignments, 6to4 relay, Teredo, ORCHID, discard, ...)
                 // and any IPv6 address outside 2000::/3
};

// "loopback", "private", "link-local", "CGNAT", "metadata", "unspecified", "multicast",
// "broadcast", "reserved", "public".
std::string_view addressRangeName(AddressRange range);

// The range of `address`. IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses are classified by the IPv4 address they carry
// (an IPv4-compatible or 6to4 one that carries a public address is kReserved).
AddressRange classifyAddress(const boost::asio::ip::address& address);

// An address block "a.b.c.d/n" or "x::/n".
struct Cidr {
  boost::asio::ip::address network;
  int prefix = 0;
  // Invalid with a message when `text` is not a CIDR block (a bare address is a /32 or /128).
  static Result<Cidr> parse(std::string_view text);
  bool contains(const boost::asio::ip::address& address) const;
  std::string str() const;
};

// The names RuntimeOptions::outbound_allow accepts besides CIDR blocks.
enum class OpenableRange { kLoopback, kPrivate, kLinkLocal, kCgnat, kMetadata };

// Which internal addresses outbound requests may reach. Default: none (only public addresses).
// The operator opens named ranges ("loopback", "private", "link-local", "cgnat", "metadata")
// or CIDR blocks ("10.1.0.0/16", "fd12::/16", "192.168.1.10"). Unspecified, multicast and
// broadcast addresses are never opened, not even by a CIDR block that covers them. Immutable
// after parse; thread-safe.
class AddressPolicy {
 public:
  AddressPolicy() = default;
  // Invalid with a message naming the bad entry and the accepted forms.
  static Result<AddressPolicy> parse(const std::vector<std::string>& entries);

  // Ok when a connection to `address` is allowed; Forbidden with a message that says which
  // range `address` is in and how an operator opens it. `host` is the name the function asked
  // for (for the message).
  Status check(std::string_view host, const boost::asio::ip::address& address) const;
  // True when addresses of `range` are allowed (kPublic always; opened named ranges).
  bool allows(AddressRange range) const;
  // The entries it was parsed from, e.g. {"loopback", "10.1.0.0/16"}.
  const std::vector<std::string>& entries() const { return entries_; }

 private:
  std::uint32_t opened_ = 0;  // bit per AddressRange
  std::vector<Cidr> cidrs_;
  std::vector<std::string> entries_;
};

// ---- Requests -----------------------------------------------------------------------------

// Limits on what a function may send in one request (the response limits are in HttpClient).
inline constexpr std::size_t kMaxOutboundUrlChars = 16'384;
inline constexpr std::size_t kMaxOutboundHeaders = 100;
// Sum of the lengths of the names and values of the function's headers.
inline constexpr std::size_t kMaxOutboundHeaderBytes = 65'536;

// Headers the platform sets and a function may not: Host, Content-Length, Transfer-Encoding,
// Connection and the other hop-by-hop headers (Keep-Alive, Proxy-Connection, TE, Trailer,
// Upgrade). Case-insensitive.
bool isPlatformHeader(std::string_view name);

// Checks a request a function asks for: the URL has no control characters or spaces and is at
// most kMaxOutboundUrlChars; the method is an RFC 7230 token; every header name is a token and
// not a platform header; every value has no CR, LF, NUL or other control character (HTAB is
// allowed); at most kMaxOutboundHeaders headers of at most kMaxOutboundHeaderBytes together; the
// body at most `max_body` bytes. Invalid (TooLarge for the sizes) with a message that says what
// was wrong.
Status checkOutboundRequest(std::string_view method, std::string_view url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::size_t body_size, std::size_t max_body);

}  // namespace parley::functions::engine
