#include "cli/rest_session.h"

#include <fmt/format.h>

#include "common/json.h"

namespace parley::cli {

namespace bj = boost::json;

Result<bj::value> RestSession::call(const std::string& method, const std::string& target,
                                    const std::string& body) {
  auto r = client.request(method, target, body);
  if (!r) return std::unexpected(r.error());
  if (r->status == 401)
    return unauthorized(fmt::format(
        "the server refused the saved login ({}); run 'parley login' again", apiErrorMessage(*r)));
  if (r->status < 200 || r->status >= 300) {
    ErrorCode code = r->status == 404   ? ErrorCode::kNotFound
                     : r->status == 403 ? ErrorCode::kForbidden
                     : r->status == 409 ? ErrorCode::kConflict
                                        : ErrorCode::kInvalid;
    return makeError(code, apiErrorMessage(*r));
  }
  if (r->body.empty()) return bj::value(nullptr);
  return json::parse(r->body);
}

Result<RestSession> openSession(const std::string& config_path, std::chrono::seconds timeout) {
  std::string path = config_path;
  if (path.empty()) {
    auto p = defaultConfigPath();
    if (!p) return std::unexpected(p.error());
    path = *p;
  }
  auto config = loadConfig(path);
  if (!config) return std::unexpected(config.error());
  HttpClient client(config->server, config->ca, config->bearer, timeout);
  return RestSession{*config, std::move(client)};
}

}  // namespace parley::cli
