#include "functions/validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace parley::functions {

namespace {

bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

}  // namespace

Status validateFunctionName(std::string_view name) {
  if (name.empty())
    return invalid("field 'name' is required: use 1-100 characters of A-Z a-z 0-9 _ -");
  if (name.size() > kMaxNameLength)
    return invalid(fmt::format("function name is {} characters long; the maximum is {}",
                               name.size(), kMaxNameLength));
  if (!std::all_of(name.begin(), name.end(), isNameChar))
    return invalid(
        fmt::format("function name '{}' may contain only letters, digits, '_' and '-'", name));
  return {};
}

const std::vector<std::string>& reservedEnvNames() {
  static const std::vector<std::string> names = {"BRAND_ID",
                                                 "LAMBDA_UUID",
                                                 "DOMAIN",
                                                 "DC",
                                                 "HTTPS_PROXY",
                                                 "HTTP_PROXY",
                                                 "NO_PROXY",
                                                 "VAULT_K8S_MOUNT",
                                                 "VAULT_DOMAIN",
                                                 "VAULT_SERVICE_ENV",
                                                 "VAULT_LAMBDA_ROLE",
                                                 "WATCHDOG_VERSION",
                                                 "NODE_ENV"};
  return names;
}

bool isReservedEnvName(std::string_view name) {
  const auto& names = reservedEnvNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

Status validateEnvVar(const store::EnvVar& var) {
  const std::string& k = var.key;
  if (k.empty()) return invalid("environment variable name is empty: use [A-Z_][A-Z0-9_]*");
  if (k.size() > kMaxEnvNameLength)
    return invalid(fmt::format("environment variable name is {} characters long; the maximum is {}",
                               k.size(), kMaxEnvNameLength));
  bool ok = (std::isupper(static_cast<unsigned char>(k[0])) || k[0] == '_') &&
            std::all_of(k.begin(), k.end(), [](char c) {
              return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
            });
  if (!ok)
    return invalid(fmt::format(
        "environment variable name '{}' is not a POSIX name: use upper-case letters, digits and "
        "'_', not starting with a digit",
        k));
  if (isReservedEnvName(k)) return invalid(fmt::format("{}: {}", kReservedEnvMessage, k));
  if (var.value.size() > kMaxEnvValueLength)
    return invalid(
        fmt::format("value of environment variable '{}' is {} characters long; the maximum is {}",
                    k, var.value.size(), kMaxEnvValueLength));
  return {};
}

Status validateEnvVars(const std::vector<store::EnvVar>& vars) {
  std::set<std::string> seen;
  for (const auto& v : vars) {
    if (auto s = validateEnvVar(v); !s) return s;
    if (!seen.insert(v.key).second)
      return invalid(fmt::format("environment variable '{}' is given twice", v.key));
  }
  return {};
}

Status validateSecretKey(std::string_view key) {
  if (key.empty()) return invalid("secret key is empty: use 1-100 characters of A-Z a-z 0-9 _ -");
  if (key.size() > kMaxSecretKeyLength)
    return invalid(fmt::format("secret key is {} characters long; the maximum is {}", key.size(),
                               kMaxSecretKeyLength));
  if (!std::all_of(key.begin(), key.end(), isNameChar))
    return invalid(
        fmt::format("secret key '{}' may contain only letters, digits, '_' and '-'", key));
  return {};
}

Status validateSecretValue(std::string_view value) {
  if (value.size() > kMaxSecretValueLength)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("secret value is {} characters long; the maximum is {}",
                                 value.size(), kMaxSecretValueLength));
  return {};
}

}  // namespace parley::functions
