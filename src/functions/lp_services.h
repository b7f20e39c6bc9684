#pragma once

// Toolbelt.LpClient's routes: which of Parley's own REST v1 resources a function reaches under
// each LivePerson service name (bot-connector-spec §4.10), and the checks on what the function
// asks for. Plain C++, no I/O; the functions platform (service/platform_host.h) applies it in the
// server before the request is handed to the server's router, which authenticates the API key
// and applies the role policy as for any REST call.
//
//   accountConfigReadOnly   GET                      skills, users
//   accountConfigReadWrite  GET POST PUT PATCH DELETE skills, users
//   msgHist                 GET                      conversations
//
// The other LpServices names (agentVep, asyncMessaging, asyncMessagingEnt, engHistDomain, rtbf,
// auditlog, smt, pusher, leDataReporting, msgEwtAPI, msdkgw) name LivePerson services Parley has
// no REST API for: refused with a message that names the service. Any other name is LivePerson's
// `Service "<x>" could not be found.`

#include <string>
#include <string_view>

#include "common/ids.h"
#include "common/result.h"

namespace parley::functions {

// The secret LpClient reads its credentials from unless the call names another.
inline constexpr std::string_view kDefaultLpAppKeySecret = "lp-faas-default-app-key";
// Longest path (with query) and body a function may send through LpClient.
inline constexpr std::size_t kMaxLpPathChars = 2048;
inline constexpr std::size_t kMaxLpBodyBytes = 1 << 20;

// Checks one LpClient request of a function of `account`: the service name, the method (upper
// case) and the path, which must be /api/v1/accounts/<account>/<resource>[/…][?query] with a
// resource the service reaches. Returns the request target to hand to the router (the path as
// given). NotFound for an unknown service; Invalid for a service Parley has no API for, a bad
// path or a body over the limit; Forbidden for another account, another resource or a write
// through a read-only service.
Result<std::string> checkLpRequest(const AccountId& account, std::string_view service,
                                   std::string_view method, std::string_view path,
                                   std::size_t body_bytes);

// The API key in the value of an LpClient app-key secret: the value itself, or the "apiKey"
// field of a JSON object. Invalid (naming `secret_name`) for LivePerson's OAuth1 JSON
// ({consumerKey, …}) and for anything else.
Result<std::string> lpApiKeyFromSecret(std::string_view secret_name, std::string_view value);

}  // namespace parley::functions
