#include "functions/engine/outbound.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace parley::functions::engine {
namespace {

namespace ip = boost::asio::ip;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

constexpr std::uint32_t v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return (std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) |
         std::uint32_t{d};
}

bool inV4(std::uint32_t a, std::uint32_t net, int prefix) {
  std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  return (a & mask) == (net & mask);
}

AddressRange classifyV4(std::uint32_t a) {
  // Exact metadata addresses first: they sit inside link-local and CGNAT, or are public.
  constexpr std::array kMetadataV4 = {v4(169, 254, 169, 254), v4(169, 254, 170, 2),
                                      v4(168, 63, 129, 16), v4(100, 100, 100, 200)};
  if (std::find(kMetadataV4.begin(), kMetadataV4.end(), a) != kMetadataV4.end())
    return AddressRange::kMetadata;
  if (a == v4(255, 255, 255, 255)) return AddressRange::kBroadcast;
  if (inV4(a, v4(0, 0, 0, 0), 8)) return AddressRange::kUnspecified;
  if (inV4(a, v4(127, 0, 0, 0), 8)) return AddressRange::kLoopback;
  if (inV4(a, v4(10, 0, 0, 0), 8) || inV4(a, v4(172, 16, 0, 0), 12) ||
      inV4(a, v4(192, 168, 0, 0), 16))
    return AddressRange::kPrivate;
  if (inV4(a, v4(169, 254, 0, 0), 16)) return AddressRange::kLinkLocal;
  if (inV4(a, v4(100, 64, 0, 0), 10)) return AddressRange::kCgnat;
  if (inV4(a, v4(224, 0, 0, 0), 4)) return AddressRange::kMulticast;
  if (inV4(a, v4(240, 0, 0, 0), 4) ||      // future use
      inV4(a, v4(192, 0, 0, 0), 24) ||     // IETF protocol assignments
      inV4(a, v4(192, 0, 2, 0), 24) ||     // TEST-NET-1
      inV4(a, v4(198, 51, 100, 0), 24) ||  // TEST-NET-2
      inV4(a, v4(203, 0, 113, 0), 24) ||   // TEST-NET-3
      inV4(a, v4(198, 18, 0, 0), 15) ||    // benchmarking
      inV4(a, v4(192, 88, 99, 0), 24))     // 6to4 relay anycast
    return AddressRange::kReserved;
  return AddressRange::kPublic;
}

std::uint32_t v4At(const ip::address_v6::bytes_type& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
         (std::uint32_t{b[at + 2]} << 8) | std::uint32_t{b[at + 3]};
}

bool prefixIs(const ip::address_v6::bytes_type& b, std::initializer_list<std::uint8_t> p) {
  return std::equal(p.begin(), p.end(), b.begin());
}

AddressRange classifyV6(const ip::address_v6& a6) {
  auto b = a6.to_bytes();
  if (a6.is_unspecified()) return AddressRange::kUnspecified;
  if (a6.is_loopback()) return AddressRange::kLoopback;
  if (a6.is_v4_mapped()) return classifyV4(v4At(b, 12));
  // ::/96 other than :: and ::1: IPv4-compatible (deprecated). Refused even for a public v4.
  if (prefixIs(b, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})) {
    AddressRange r = classifyV4(v4At(b, 12));
    return r == AddressRange::kPublic ? AddressRange::kReserved : r;
  }
  // 64:ff9b::/96 NAT64: a gateway would connect to the embedded IPv4 address.
  if (prefixIs(b, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0})) return classifyV4(v4At(b, 12));
  // 64:ff9b:1::/48 local-use NAT64 (RFC 8215).
  if (prefixIs(b, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01})) return AddressRange::kPrivate;
  // fd00:ec2::254, the AWS instance metadata service over IPv6.
  if (a6 == ip::make_address_v6("fd00:ec2::254")) return AddressRange::kMetadata;
  if ((b[0] & 0xfe) == 0xfc) return AddressRange::kPrivate;                    // fc00::/7
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressRange::kLinkLocal;  // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddressRange::kPrivate;    // fec0::/10
  if (b[0] == 0xff) return AddressRange::kMulticast;                           // ff00::/8
  // 2002::/16 6to4: the embedded IPv4 address is reached through a relay.
  if (prefixIs(b, {0x20, 0x02})) {
    AddressRange r = classifyV4(v4At(b, 2));
    return r == AddressRange::kPublic ? AddressRange::kReserved : r;
  }
  if (prefixIs(b, {0x20, 0x01, 0x0d, 0xb8}) ||  // documentation
      prefixIs(b, {0x20, 0x01, 0x00, 0x00}) ||  // Teredo (carries an obfuscated IPv4 address)
      (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0))  // 2001::/23 IETF protocols
    return AddressRange::kReserved;
  if ((b[0] & 0xe0) != 0x20) return AddressRange::kReserved;  // outside 2000::/3
  return AddressRange::kPublic;
}

bool isTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  constexpr std::string_view kTchar = "!#$%&'*+-.^_`|~";
  return kTchar.find(c) != std::string_view::npos;
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isTokenChar);
}

// A printable rendering of a string that may hold control characters, for messages.
std::string visible(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (s.size() > 60) out += "...";
  return out;
}

std::uint32_t bit(AddressRange r) { return std::uint32_t{1} << static_cast<int>(r); }

}  // namespace

bool hostAllowed(std::string_view host_in, const std::vector<std::string>& allowlist) {
  std::string host = lower(host_in);
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (host.empty()) return false;
  for (const auto& entry_in : allowlist) {
    std::string entry = lower(entry_in);
    if (entry == host) return true;
    if (entry.size() > 2 && entry.starts_with("*.")) {
      std::string_view suffix = std::string_view(entry).substr(1);  // ".example.com"
      if (host.size() > suffix.size() && host.ends_with(suffix)) {
        std::string_view label = std::string_view(host).substr(0, host.size() - suffix.size());
        if (label.find('.') == std::string_view::npos) return true;
      }
    }
  }
  return false;
}

RateLimiter::RateLimiter(const Clock& clock, int per_second, std::shared_ptr<LimitPeers> peers,
                         std::string name)
    : clock_(clock), per_second_(per_second), peers_(std::move(peers)), name_(std::move(name)) {
  if (peers_) peers_->attach(name_, [this](std::string_view event) { receive(event); });
}

RateLimiter::~RateLimiter() {
  if (peers_) peers_->detach(name_);
}

RateLimiter::Window& RateLimiter::windowOf(const std::string& key, TimeMs second) {
  if (windows_.size() > 10'000) {
    std::erase_if(windows_, [&](const auto& kv) { return kv.second.second < second; });
  }
  auto& w = windows_[key];
  if (w.second < second) {
    w.second = second;
    w.count = 0;
  }
  return w;
}

bool RateLimiter::tryAcquire(const std::string& key) {
  const TimeMs second = clock_.nowMs() / 1000;
  {
    MutexLock lock(mu_);
    auto& w = windowOf(key, second);
    if (w.count >= per_second_) return false;
    ++w.count;
  }
  // The second it was made in, then the key: "<second> <key>".
  if (peers_) peers_->publish(name_, std::to_string(second) + " " + key);
  return true;
}

void RateLimiter::receive(std::string_view event) {
  const auto space = event.find(' ');
  if (space == std::string_view::npos || space + 1 >= event.size()) return;
  TimeMs second = 0;
  const auto* first = event.data();
  const auto [end, ec] = std::from_chars(first, first + space, second);
  if (ec != std::errc() || end != first + space || second < 0) return;
  // Counted in this node's current second: a request made in the second before (a clock a
  // little behind, a slow bus) still counts, so skew makes the limit stricter, never looser; an
  // older one, or one from a clock far ahead, is dropped.
  const TimeMs now = clock_.nowMs() / 1000;
  if (second < now - 1 || second > now + 1) return;
  const std::string key(event.substr(space + 1));
  MutexLock lock(mu_);
  ++windowOf(key, now).count;
  ++peer_events_;
}

std::uint64_t RateLimiter::peerEvents() const {
  MutexLock lock(mu_);
  return peer_events_;
}

// ---- Addresses ----------------------------------------------------------------------------

std::string_view addressRangeName(AddressRange range) {
  switch (range) {
    case AddressRange::kPublic:
      return "public";
    case AddressRange::kLoopback:
      return "loopback";
    case AddressRange::kPrivate:
      return "private";
    case AddressRange::kLinkLocal:
      return "link-local";
    case AddressRange::kCgnat:
      return "CGNAT";
    case AddressRange::kMetadata:
      return "metadata";
    case AddressRange::kUnspecified:
      return "unspecified";
    case AddressRange::kMulticast:
      return "multicast";
    case AddressRange::kBroadcast:
      return "broadcast";
    case AddressRange::kReserved:
      return "reserved";
  }
  return "reserved";
}

AddressRange classifyAddress(const ip::address& address) {
  if (address.is_v4()) return classifyV4(address.to_v4().to_uint());
  return classifyV6(address.to_v6());
}

Result<Cidr> Cidr::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return invalid(
        fmt::format("'{}' is not a CIDR block ({}); write it as 10.1.0.0/16, "
                    "fd12::/16 or a single address",
                    text, why));
  };
  std::string_view addr = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || end != p.data() + p.size() || p.empty()) return bad("bad prefix");
  }
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(addr), ec);
  if (ec) return bad("not an IP address");
  int max = a.is_v4() ? 32 : 128;
  if (prefix < 0) prefix = max;
  if (prefix > max) return bad(fmt::format("the prefix is longer than {}", max));
  return Cidr{a, prefix};
}

bool Cidr::contains(const ip::address& address_in) const {
  ip::address address = address_in;
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    address = ip::make_address_v4(ip::v4_mapped, address.to_v6());
  if (address.is_v4() != network.is_v4()) return false;
  if (address.is_v4()) return inV4(address.to_v4().to_uint(), network.to_v4().to_uint(), prefix);
  auto a = address.to_v6().to_bytes();
  auto n = network.to_v6().to_bytes();
  int bits = prefix;
  for (std::size_t i = 0; i < a.size() && bits > 0; ++i, bits -= 8) {
    std::uint8_t mask = bits >= 8 ? 0xff : static_cast<std::uint8_t>(0xff << (8 - bits));
    if ((a[i] & mask) != (n[i] & mask)) return false;
  }
  return true;
}

std::string Cidr::str() const { return network.to_string() + "/" + std::to_string(prefix); }

Result<AddressPolicy> AddressPolicy::parse(const std::vector<std::string>& entries) {
  AddressPolicy p;
  for (const auto& e : entries) {
    std::string name = lower(e);
    if (name == "loopback") {
      p.opened_ |= bit(AddressRange::kLoopback);
    } else if (name == "private") {
      p.opened_ |= bit(AddressRange::kPrivate);
    } else if (name == "link-local") {
      p.opened_ |= bit(AddressRange::kLinkLocal);
    } else if (name == "cgnat") {
      p.opened_ |= bit(AddressRange::kCgnat);
    } else if (name == "metadata") {
      p.opened_ |= bit(AddressRange::kMetadata);
    } else if (auto c = Cidr::parse(name)) {
      p.cidrs_.push_back(*c);
    } else if (name.find_first_of("/.:") != std::string::npos) {
      return std::unexpected(c.error());
    } else {
      return invalid(fmt::format(
          "outbound-allow entry '{}' is not a range: use loopback, private, link-local, cgnat, "
          "metadata or a CIDR block such as 10.1.0.0/16",
          e));
    }
    p.entries_.push_back(name);
  }
  return p;
}

bool AddressPolicy::allows(AddressRange range) const {
  return range == AddressRange::kPublic || (opened_ & bit(range)) != 0;
}

Status AddressPolicy::check(std::string_view host, const ip::address& address) const {
  AddressRange range = classifyAddress(address);
  if (allows(range)) return {};
  bool never = range == AddressRange::kUnspecified || range == AddressRange::kMulticast ||
               range == AddressRange::kBroadcast;
  if (!never)
    for (const auto& c : cidrs_)
      if (c.contains(address)) return {};
  std::string shown = address.to_string();
  std::string what = host == shown ? fmt::format("{} is", shown)
                                   : fmt::format("'{}' resolves to {},", host, shown);
  return forbidden(fmt::format(
      "{} a {} address; functions may reach only public addresses{}", what, addressRangeName(range),
      never ? "" : " (an operator can open this range with --outbound-allow)"));
}

// ---- Requests -----------------------------------------------------------------------------

bool isPlatformHeader(std::string_view name) {
  static constexpr std::array<std::string_view, 9> kNames = {
      "host",       "content-length", "transfer-encoding",
      "connection", "keep-alive",     "proxy-connection",
      "te",         "trailer",        "upgrade"};
  std::string n = lower(name);
  return std::find(kNames.begin(), kNames.end(), n) != kNames.end();
}

Status checkOutboundRequest(std::string_view method, std::string_view url,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            std::size_t body_size, std::size_t max_body) {
  if (url.size() > kMaxOutboundUrlChars)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("the URL is {} characters long; the limit is {}", url.size(),
                                 kMaxOutboundUrlChars));
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return invalid(fmt::format(
          "the URL '{}' contains a space or control character; percent-encode it", visible(url)));
  }
  if (!isToken(method))
    return invalid(fmt::format(
        "the method '{}' is not an HTTP method name (letters, digits and !#$%&'*+-.^_`|~ only)",
        visible(method)));
  if (headers.size() > kMaxOutboundHeaders)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("the request has {} headers; the limit is {}", headers.size(),
                                 kMaxOutboundHeaders));
  std::size_t bytes = 0;
  for (const auto& [name, value] : headers) {
    if (!isToken(name))
      return invalid(fmt::format(
          "the header name '{}' is not valid: use letters, digits and !#$%&'*+-.^_`|~, no "
          "spaces, colons or line breaks",
          visible(name)));
    if (isPlatformHeader(name))
      return invalid(fmt::format(
          "the header '{}' is set by the platform and cannot be set by a function", name));
    for (char c : value) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f)
        return invalid(fmt::format(
            "the value of header '{}' contains a control character (CR, LF, NUL, ...): '{}'; "
            "header values must be a single line",
            name, visible(value)));
    }
    bytes += name.size() + value.size();
  }
  if (bytes > kMaxOutboundHeaderBytes)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("the request headers are {} bytes long (names and values); the "
                                 "limit is {}",
                                 bytes, kMaxOutboundHeaderBytes));
  if (body_size > max_body)
    return makeError(
        ErrorCode::kTooLarge,
        fmt::format("the request body is {} bytes long; the limit is {}", body_size, max_body));
  return {};
}

}  // namespace parley::functions::engine
