#pragma once

// The CLI's saved login: which server and account it talks to and with which bearer.
// Stored as JSON {server, account, bearer, ca} in $PARLEY_CONFIG, else
// $HOME/.config/parley/cli.json, with mode 0600 (it holds a bearer token).

#include <string>

#include "common/result.h"

namespace parley::cli {

struct CliConfig {
  std::string server;   // e.g. "https://127.0.0.1:8443"
  std::string account;  // e.g. "12345678"
  std::string bearer;   // REST token from POST /api/account/{acc}/login
  std::string ca;       // PEM file that verifies the server's certificate; "" = system roots
};

// $PARLEY_CONFIG when set, else $HOME/.config/parley/cli.json. Invalid when neither
// PARLEY_CONFIG nor HOME is set.
Result<std::string> defaultConfigPath();

// NotFound with "run 'parley login' first" when the file does not exist; Invalid when it is
// not a JSON object with the string fields above.
Result<CliConfig> loadConfig(const std::string& path);
// Writes atomically (temp file + rename) with mode 0600, creating parent directories.
Status saveConfig(const std::string& path, const CliConfig& config);

}  // namespace parley::cli
