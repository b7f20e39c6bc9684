#pragma once

// The rules for the outbound domain allowlist of an account (bot-connector-spec §4): what an
// entry may be and how it is normalised. Pure functions; thread-safe.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "functions/engine/outbound.h"

namespace parley::functions::service {

inline constexpr std::size_t kMaxAllowlistEntries = 100;
inline constexpr std::size_t kMaxDomainLength = 253;

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
