#pragma once

// Input rules of the functions platform (bot-connector-spec §4): function names, environment
// variables, secrets and the outbound domain allowlist. Pure functions; thread-safe.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "functions/engine/outbound.h"
#include "store/store.h"

namespace parley::functions::service {

inline constexpr std::size_t kMaxNameLength = 100;
inline constexpr std::size_t kMaxDescriptionLength = 1000;
inline constexpr std::size_t kMaxCodeLength = 100'000;
inline constexpr std::size_t kMaxPayloadLength = 10'000;
inline constexpr std::size_t kMaxEnvNameLength = 200;
inline constexpr std::size_t kMaxEnvValueLength = 200;
inline constexpr std::size_t kMaxSecretKeyLength = 100;
inline constexpr std::size_t kMaxSecretValueLength = 10'000;
inline constexpr std::size_t kMaxAllowlistEntries = 100;
inline constexpr std::size_t kMaxDomainLength = 253;

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

// Normalises (lowercase, no trailing dot) and checks one allowlist entry: an RFC 1035 host name
// (labels of letters, digits and '-', 1–63 characters each, not starting or ending with '-',
// at most 253 characters; a leading digit is accepted as RFC 1123 allows), optionally with
// exactly one leading wildcard label ("*.example.com"). Returns the normalised name.
// Entries that can only lead inside are refused unless `policy` opens their range: IPv4
// literals of the ranges AddressPolicy refuses (an IPv4 address must be written a.b.c.d; other
// spellings a resolver accepts — 2130706433, 0x7f000001, 0177.0.0.1, 127.1, 0 — are refused
// outright), names whose last label is a number, IPv6 literals, "localhost" and *.localhost,
// and well-known cloud metadata names (metadataHostNames()), also through a wildcard.
Result<std::string> normalizeDomain(std::string_view domain,
                                    const engine::AddressPolicy& policy = {});
// Normalises and checks a whole allowlist: every entry valid, no duplicates, at most 100.
Result<std::vector<std::string>> validateAllowlist(const std::vector<std::string>& domains,
                                                   const engine::AddressPolicy& policy = {});

// Host names of cloud instance-metadata services ("metadata.google.internal", ...).
const std::vector<std::string>& metadataHostNames();
// Matching a host against the list is the runtime's job (engine/outbound.h hostAllowed).

}  // namespace parley::functions::service
