#pragma once

// Input rules of the functions platform (bot-connector-spec §4): function names, environment
// variables and secrets. Shared by the server (src/functions/service) and the command line
// (src/cli), so both refuse the same input. Pure functions; thread-safe. The allowlist's domain
// rules are the server's (service/domains.h).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace parley::functions {

inline constexpr std::size_t kMaxNameLength = 100;
inline constexpr std::size_t kMaxDescriptionLength = 1000;
inline constexpr std::size_t kMaxCodeLength = 100'000;
inline constexpr std::size_t kMaxPayloadLength = 10'000;
inline constexpr std::size_t kMaxEnvNameLength = 200;
inline constexpr std::size_t kMaxEnvValueLength = 200;
inline constexpr std::size_t kMaxSecretKeyLength = 100;
inline constexpr std::size_t kMaxSecretValueLength = 10'000;

// The message LivePerson shows for a reserved environment variable name.
inline constexpr std::string_view kReservedEnvMessage =
    "Variable name is reserved and thereby blocked for use";

// 1–100 characters of [A-Za-z0-9_-]. Invalid with a message naming the rule otherwise.
Status validateFunctionName(std::string_view name);

// The names the platform sets itself (§4.7): BRAND_ID, LAMBDA_UUID, DOMAIN, DC, HTTPS_PROXY, ...
const std::vector<std::string>& reservedEnvNames();
bool isReservedEnvName(std::string_view name);

// Checks one variable: POSIX name [A-Z_][A-Z0-9_]* of at most 200 characters, not reserved, and
// a value of at most 200 characters.
Status validateEnvVar(const store::EnvVar& var);
// Checks every variable and that no name appears twice.
Status validateEnvVars(const std::vector<store::EnvVar>& vars);

// Secret key: 1–100 characters of [A-Za-z0-9_-]; value at most 10,000 characters.
Status validateSecretKey(std::string_view key);
Status validateSecretValue(std::string_view value);

}  // namespace parley::functions
