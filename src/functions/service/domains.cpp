#include "functions/service/domains.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/ip/address_v4.hpp>
#include <cctype>
#include <set>

namespace parley::functions::service {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool validLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

}  // namespace

const std::vector<std::string>& metadataHostNames() {
  static const std::vector<std::string> names = {"metadata",
                                                 "metadata.google.internal",
                                                 "metadata.goog",
                                                 "instance-data",
                                                 "instance-data.ec2.internal",
                                                 "metadata.tencentyun.com",
                                                 "metadata.platformequinix.com"};
  return names;
}

namespace {

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The address rules of an entry whose syntax is valid (`d` normalised, `rest` without "*.").
Status checkReachable(std::string_view domain, const std::string& d, std::string_view rest,
                      bool wildcard, const engine::AddressPolicy& policy) {
  auto refuse = [&](const std::string& why) {
    return invalid(fmt::format("'{}' cannot be allowlisted: {}", domain, why));
  };
  // Anything a resolver reads as an IPv4 address (inet_aton: 1-4 parts, decimal, octal or hex).
  in_addr parsed{};
  if (inet_aton(std::string(rest).c_str(), &parsed) != 0) {
    auto address = boost::asio::ip::address_v4(ntohl(parsed.s_addr));
    std::string canonical = address.to_string();
    if (wildcard) return refuse("a wildcard cannot be followed by an IP address");
    if (canonical != rest)
      return refuse(fmt::format(
          "it is the IPv4 address {} written in another form; write IPv4 addresses as four "
          "decimal numbers (a.b.c.d)",
          canonical));
    if (auto s = policy.check(canonical, address); !s) return refuse(s.error().message);
    return {};
  }
  std::string_view last =
      rest.substr(rest.rfind('.') == std::string_view::npos ? 0 : rest.rfind('.') + 1);
  if (allDigits(last))
    return refuse(
        "its last label is a number, so it is neither a host name nor an IPv4 address a.b.c.d");
  if (!policy.allows(engine::AddressRange::kLoopback) &&
      (d == "localhost" || d.ends_with(".localhost") || d == "localhost.localdomain" ||
       d == "ip6-localhost" || d == "ip6-loopback"))
    return refuse(
        "it names this machine (loopback); functions may reach only public addresses (an "
        "operator can open loopback with --outbound-allow)");
  if (!policy.allows(engine::AddressRange::kMetadata))
    for (const auto& m : metadataHostNames())
      if (engine::hostAllowed(m, {d}))
        return refuse(fmt::format(
            "it {} the cloud metadata service {}; functions may not reach instance metadata",
            d == m ? "is" : "matches", m));
  return {};
}

}  // namespace

Result<std::string> normalizeDomain(std::string_view domain, const engine::AddressPolicy& policy) {
  std::string d = lower(domain);
  if (!d.empty() && d.back() == '.') d.pop_back();
  auto bad = [&](std::string_view why) {
    return invalid(fmt::format("'{}' is not a valid domain: {}", domain, why));
  };
  if (d.empty()) return bad("it is empty");
  if (d.find(':') != std::string::npos || d.find('[') != std::string::npos)
    return invalid(fmt::format(
        "'{}' cannot be allowlisted: IPv6 addresses (and ports) are not allowlist entries; list "
        "the host name",
        domain));
  if (d.size() > kMaxDomainLength) return bad("it is longer than 253 characters");
  std::string_view rest = d;
  bool wildcard = false;
  if (rest.starts_with("*.")) {
    wildcard = true;
    rest.remove_prefix(2);
  }
  if (rest.find('*') != std::string_view::npos)
    return bad("only one wildcard is allowed, as the first label (*.example.com)");
  std::size_t labels = 0;
  std::size_t pos = 0;
  while (true) {
    std::size_t dot = rest.find('.', pos);
    std::string_view label =
        rest.substr(pos, dot == std::string_view::npos ? rest.npos : dot - pos);
    if (!validLabel(label))
      return bad(
          "each label must be 1-63 letters, digits or '-', and must not start or end with '-'");
    ++labels;
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  if (wildcard && labels < 2)
    return bad("a wildcard must be followed by at least two labels (*.example.com)");
  if (auto s = checkReachable(domain, d, rest, wildcard, policy); !s)
    return std::unexpected(s.error());
  return d;
}

Result<std::vector<std::string>> validateAllowlist(const std::vector<std::string>& domains,
                                                   const engine::AddressPolicy& policy) {
  if (domains.size() > kMaxAllowlistEntries)
    return invalid(fmt::format("the allowlist has {} entries; the maximum is {}", domains.size(),
                               kMaxAllowlistEntries));
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& d : domains) {
    auto n = normalizeDomain(d, policy);
    if (!n) return std::unexpected(n.error());
    if (!seen.insert(*n).second)
      return invalid(fmt::format("domain '{}' is listed twice; remove the duplicate", *n));
    out.push_back(std::move(*n));
  }
  return out;
}

}  // namespace parley::functions::service
