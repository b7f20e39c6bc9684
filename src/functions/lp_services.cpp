#include "functions/lp_services.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <vector>

namespace parley::functions {
namespace {

enum class LpAccess { kRead, kReadWrite };

struct LpService {
  std::string_view name;
  LpAccess access;
  std::array<std::string_view, 2> resources;
};

constexpr std::array<LpService, 3> kServices{{
    {"accountConfigReadOnly", LpAccess::kRead, {"skills", "users"}},
    {"accountConfigReadWrite", LpAccess::kReadWrite, {"skills", "users"}},
    {"msgHist", LpAccess::kRead, {"conversations", ""}},
}};

// LivePerson service names (LpServices) that Parley has no REST API for.
constexpr std::array<std::string_view, 11> kWithoutApi{
    "agentVep", "asyncMessaging",  "asyncMessagingEnt", "engHistDomain", "rtbf",  "auditlog",
    "smt",      "leDataReporting", "msgEwtAPI",         "msdkgw",        "pusher"};

constexpr std::string_view kReached =
    "LpClient reaches accountConfigReadOnly and accountConfigReadWrite (skills, users) and "
    "msgHist (conversations)";

}  // namespace

Result<std::string> checkLpRequest(const AccountId& account, std::string_view service,
                                   std::string_view method, std::string_view path,
                                   std::size_t body_bytes) {
  auto svc = std::find_if(kServices.begin(), kServices.end(),
                          [&](const LpService& s) { return s.name == service; });
  if (svc == kServices.end()) {
    if (std::find(kWithoutApi.begin(), kWithoutApi.end(), service) != kWithoutApi.end())
      return invalid("LpClient: Parley has no API for the LivePerson service \"" +
                     std::string(service) + "\"; " + std::string(kReached));
    return notFound("Service \"" + std::string(service) + "\" could not be found.");
  }
  static constexpr std::array<std::string_view, 5> kMethods{"GET", "POST", "PUT", "PATCH",
                                                            "DELETE"};
  if (std::find(kMethods.begin(), kMethods.end(), method) == kMethods.end())
    return invalid("LpClient: method '" + std::string(method) +
                   "' is not one of GET, POST, PUT, PATCH, DELETE");
  if (svc->access == LpAccess::kRead && method != "GET")
    return forbidden("LpClient: " + std::string(service) + " is read-only (GET only)" +
                     (service == "accountConfigReadOnly"
                          ? std::string("; use accountConfigReadWrite to change skills or users")
                          : std::string()));
  if (body_bytes > kMaxLpBodyBytes)
    return invalid("LpClient: the body is " + std::to_string(body_bytes) + " bytes; at most " +
                   std::to_string(kMaxLpBodyBytes));
  if (path.size() > kMaxLpPathChars)
    return invalid("LpClient: the path is longer than " + std::to_string(kMaxLpPathChars) +
                   " characters");
  const std::string expected = "/api/v1/accounts/" + account.str() + "/<resource>";
  auto u = boost::urls::parse_origin_form(path);
  if (!u || u->has_fragment())
    return invalid("LpClient: '" + std::string(path) + "' is not a path like " + expected);
  std::vector<std::string> seg;
  for (auto s : u->segments()) seg.emplace_back(s);
  for (const auto& s : seg) {
    if (s == "." || s == ".." || s.empty())
      return invalid("LpClient: the path may not have empty, '.' or '..' segments");
  }
  if (seg.size() < 5 || seg[0] != "api" || seg[1] != "v1" || seg[2] != "accounts")
    return invalid("LpClient: the path must look like " + expected + ", not '" + std::string(path) +
                   "'");
  if (seg[3] != account.str())
    return forbidden("LpClient: a function reaches only its own account (" + account.str() +
                     "), not account '" + seg[3] + "'");
  if (std::find(svc->resources.begin(), svc->resources.end(), seg[4]) == svc->resources.end() ||
      seg[4].empty())
    return forbidden("LpClient: " + std::string(service) + " does not reach '" + seg[4] + "'; " +
                     std::string(kReached));
  return std::string(path);
}

Result<std::string> lpApiKeyFromSecret(std::string_view secret_name, std::string_view value) {
  const std::string name(secret_name);
  const std::string how = "store an API key of this account (POST apikeys) in secret '" + name +
                          "', as the key itself or as {\"apiKey\": \"<key>\"}";
  std::string_view v = value;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\n' || v.front() == '\t'))
    v.remove_prefix(1);
  if (!v.empty() && v.front() == '{') {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(v, ec);
    if (ec || !parsed.is_object())
      return invalid("LpClient: secret '" + name + "' is not valid JSON; " + how);
    const auto& o = parsed.as_object();
    if (auto* k = o.if_contains("apiKey"); k && k->is_string() && !k->as_string().empty())
      return std::string(k->as_string());
    if (o.contains("consumerKey"))
      return invalid("LpClient: secret '" + name +
                     "' holds LivePerson OAuth1 credentials ({consumerKey, …}); Parley's "
                     "LpClient authenticates with a Parley API key instead: " +
                     how);
    return invalid("LpClient: secret '" + name + "' has no \"apiKey\"; " + how);
  }
  if (v.empty() || v.size() > 512 ||
      std::any_of(v.begin(), v.end(), [](char c) { return c <= ' ' || c == 0x7f; }))
    return invalid("LpClient: secret '" + name + "' does not hold an API key; " + how);
  return std::string(v);
}

}  // namespace parley::functions
