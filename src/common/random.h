#pragma once

#include <cstddef>
#include <string>

namespace parley {

// Cryptographically random values (libsodium). Thread-safe; initialises libsodium on first use.

// A random UUID v4 in canonical lowercase form.
std::string randomUuid();
// `bytes` random bytes as lowercase hex (URL-path safe; used for bearers, csrf, api keys).
std::string randomHex(std::size_t bytes);

}  // namespace parley
