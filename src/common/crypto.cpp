#include "common/crypto.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/check.h"
#include "common/random.h"

namespace parley::crypto {
namespace {

void ensureSodium() {
  static const int rc = sodium_init();
  PARLEY_CHECK(rc >= 0, "sodium_init failed");
}

std::string toHex(const unsigned char* data, std::size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, n);
  out.pop_back();
  return out;
}

std::string errnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// Reads the whole (small) file at `path`.
Result<std::string> readKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return notFound("no key file at " + path);
    return makeError(ErrorCode::kUnavailable, errnoText("cannot open key file", path));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return makeError(ErrorCode::kUnavailable, errnoText("cannot stat key file", path));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    ::close(fd);
    return invalid("key file " + path + " is accessible by group or others; run `chmod 600 " +
                   path + "`");
  }
  std::string text;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return makeError(ErrorCode::kUnavailable, errnoText("cannot read key file", path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > 4096) break;
  }
  ::close(fd);
  return text;
}

Status writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return makeError(ErrorCode::kUnavailable, std::strerror(errno));
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

Result<std::string> hashPassword(std::string_view password, PasswordCost cost) {
  ensureSodium();
  unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
  std::size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  if (cost == PasswordCost::kMinimumForTest) {
    ops = crypto_pwhash_OPSLIMIT_MIN;
    mem = crypto_pwhash_MEMLIMIT_MIN;
  }
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops, mem,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return internalError("password hashing ran out of memory; retry later");
  return std::string(out);
}

bool verifyPassword(std::string_view hash, std::string_view password) {
  ensureSodium();
  if (hash.empty() || hash.size() >= crypto_pwhash_STRBYTES) return false;
  std::string h(hash);  // crypto_pwhash_str_verify needs a NUL-terminated string
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

std::string sha256Hex(std::string_view data) {
  ensureSodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return toHex(digest, sizeof digest);
}

static_assert(SecretBox::kKeyBytes == crypto_secretbox_KEYBYTES);
static_assert(SecretBox::kNonceBytes == crypto_secretbox_NONCEBYTES);
static_assert(SecretBox::kMacBytes == crypto_secretbox_MACBYTES);

Result<SecretBox> SecretBox::loadOrCreate(const std::string& key_path) {
  ensureSodium();
  auto text = readKeyFile(key_path);
  if (!text && text.error().code == ErrorCode::kNotFound) {
    const auto dir = std::filesystem::path(key_path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (!ec)
        std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace, ec);
      if (ec)
        return makeError(ErrorCode::kUnavailable,
                         "cannot create key directory " + dir.string() + ": " + ec.message());
    }
    // Write a new key to a private temporary file, then link it into place: link() fails with
    // EEXIST when another process won the race, and then we load its key.
    std::array<unsigned char, kKeyBytes> key{};
    randombytes_buf(key.data(), key.size());
    std::string tmp = key_path + ".tmp-" + randomHex(8);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return makeError(ErrorCode::kUnavailable, errnoText("cannot create key file", tmp));
    auto written = writeAll(fd, toHex(key.data(), key.size()) + "\n");
    bool synced = ::fsync(fd) == 0;
    ::close(fd);
    sodium_memzero(key.data(), key.size());
    if (!written || !synced) {
      ::unlink(tmp.c_str());
      return makeError(ErrorCode::kUnavailable, "cannot write key file " + tmp);
    }
    int rc = ::link(tmp.c_str(), key_path.c_str());
    int link_errno = errno;
    ::unlink(tmp.c_str());
    if (rc != 0 && link_errno != EEXIST) {
      errno = link_errno;
      return makeError(ErrorCode::kUnavailable, errnoText("cannot create key file", key_path));
    }
    text = readKeyFile(key_path);
  }
  if (!text) return std::unexpected(text.error());
  std::string hex = *text;
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' '))
    hex.pop_back();
  std::array<unsigned char, kKeyBytes> key{};
  std::size_t len = 0;
  if (hex.size() != kKeyBytes * 2 ||
      sodium_hex2bin(key.data(), key.size(), hex.data(), hex.size(), nullptr, &len, nullptr) != 0 ||
      len != kKeyBytes) {
    sodium_memzero(hex.data(), hex.size());
    return invalid("key file " + key_path + " must hold 64 hex characters (a 32-byte key)");
  }
  sodium_memzero(hex.data(), hex.size());
  SecretBox box(key);
  sodium_memzero(key.data(), key.size());
  return box;
}

SecretBox SecretBox::randomForTest() {
  ensureSodium();
  std::array<unsigned char, kKeyBytes> key{};
  randombytes_buf(key.data(), key.size());
  return SecretBox(key);
}

SecretBox::~SecretBox() { sodium_memzero(key_.data(), key_.size()); }

Result<std::string> SecretBox::seal(std::string_view plaintext) const {
  ensureSodium();
  std::string out(kNonceBytes + kMacBytes + plaintext.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, kNonceBytes);
  if (crypto_secretbox_easy(nonce + kNonceBytes,
                            reinterpret_cast<const unsigned char*>(plaintext.data()),
                            plaintext.size(), nonce, key_.data()) != 0)
    return internalError("encryption failed");
  return out;
}

Result<std::string> SecretBox::open(std::string_view sealed) const {
  ensureSodium();
  if (sealed.size() < kNonceBytes + kMacBytes)
    return invalid("sealed value is too short to hold a nonce and a MAC");
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  std::string out(sealed.size() - kNonceBytes - kMacBytes, '\0');
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), nonce + kNonceBytes,
                                 sealed.size() - kNonceBytes, nonce, key_.data()) != 0)
    return invalid("sealed value cannot be decrypted: it was made with another key or altered");
  return out;
}

}  // namespace parley::crypto
