#pragma once

// Password hashing, SHA-256 and authenticated symmetric encryption, all from libsodium.
// Every function is thread-safe and initialises libsodium on first use.

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace parley::crypto {

// How much CPU and memory a password hash costs.
enum class PasswordCost {
  // crypto_pwhash OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE (about 64 MiB, tens of ms).
  kInteractive,
  // OPSLIMIT_MIN / MEMLIMIT_MIN: only for tests, where thousands of users are created.
  kMinimumForTest,
};

// An argon2id hash string (crypto_pwhash_str, "$argon2id$v=19$m=...") of `password`; it embeds
// the salt and the cost, so verifyPassword needs nothing else. Internal when libsodium cannot
// allocate the memory the cost asks for.
Result<std::string> hashPassword(std::string_view password,
                                 PasswordCost cost = PasswordCost::kInteractive);

// True when `password` matches `hash` (made by hashPassword at any cost). False for a wrong
// password and for a malformed hash.
bool verifyPassword(std::string_view hash, std::string_view password);

// Lowercase hex SHA-256 of `data` (64 characters). Used to store API keys by hash.
std::string sha256Hex(std::string_view data);

// Authenticated encryption (XSalsa20-Poly1305, crypto_secretbox) under one 32-byte key, for
// secrets at rest. A value object: copyable, thread-safe (seal/open are const).
class SecretBox {
 public:
  static constexpr std::size_t kKeyBytes = 32;
  static constexpr std::size_t kNonceBytes = 24;
  static constexpr std::size_t kMacBytes = 16;

  // Loads the key from `key_path` or, when the file does not exist, creates it with a random key
  // and mode 0600 (atomically: concurrent callers end up with the same key), creating a missing
  // parent directory with mode 0700. The file holds the
  // key as 64 hex characters and a newline. Invalid when the file is malformed or readable by
  // group or others (the message says to chmod 600); Unavailable on I/O errors.
  static Result<SecretBox> loadOrCreate(const std::string& key_path);
  // A box with a fresh random key that is never written anywhere.
  static SecretBox randomForTest();

  SecretBox(const SecretBox&) = default;
  SecretBox& operator=(const SecretBox&) = default;
  ~SecretBox();

  // A random nonce followed by the ciphertext and MAC: kNonceBytes + size + kMacBytes bytes of
  // binary data. Never fails with a valid key; Result for symmetry with open().
  Result<std::string> seal(std::string_view plaintext) const;
  // The plaintext of `sealed` (from seal()). Invalid when it is too short, was made with another
  // key or was altered.
  Result<std::string> open(std::string_view sealed) const;

 private:
  explicit SecretBox(const std::array<unsigned char, kKeyBytes>& key) : key_(key) {}
  std::array<unsigned char, kKeyBytes> key_{};
};

}  // namespace parley::crypto
