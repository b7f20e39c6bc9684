#pragma once

// A logged-in REST session of the CLI: the saved login (`parley login`) and an HTTP client for
// its server. Not thread-safe; one per command.

#include <boost/json.hpp>
#include <chrono>
#include <string>

#include "cli/config.h"
#include "cli/http_client.h"
#include "common/result.h"

namespace parley::cli {

struct RestSession {
  CliConfig config;
  HttpClient client;

  // "/api/v1/accounts/<account>" of the saved login.
  std::string accountPath() const { return "/api/v1/accounts/" + config.account; }

  // The parsed JSON body of a 2xx response (null when empty). Otherwise an error with the
  // server's message: Unauthorized (log in again) for 401, NotFound for 404, Forbidden for 403,
  // Conflict for 409, Invalid for any other status; Unavailable when the server can't be reached.
  Result<boost::json::value> call(const std::string& method, const std::string& target,
                                  const std::string& body = "");
};

// Opens the session saved at `config_path` (empty: the default config path).
Result<RestSession> openSession(const std::string& config_path,
                                std::chrono::seconds timeout = std::chrono::seconds(60));

}  // namespace parley::cli
