#include "server/jwt.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <filesystem>

#include "common/json.h"
#include "common/random.h"
#include "server/tls_files.h"

namespace parley::server {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string hmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string hexDecode(std::string_view hex) {
  std::string out;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    int hi = val(hex[i]), lo = val(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

std::string base64UrlEncode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(data[k]); };
  for (; i + 2 < data.size(); i += 3) {
    unsigned v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    unsigned v = b(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (i + 2 == data.size()) {
    unsigned v = (b(i) << 16) | (b(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

Result<std::string> base64UrlDecode(std::string_view text) {
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '-' || c == '+')
      v = 62;
    else if (c == '_' || c == '/')
      v = 63;
    else if (c == '=')
      break;
    else
      return invalid("not base64url");
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string signJwt(const JwtClaims& c, std::string_view key) {
  json::bj::object payload{
      {"sub", c.sub}, {"aud", c.aud}, {"iss", c.iss}, {"iat", c.iat}, {"exp", c.exp}};
  std::string head = base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})");
  std::string body = base64UrlEncode(json::dump(payload));
  std::string signing = head + "." + body;
  return signing + "." + base64UrlEncode(hmacSha256(key, signing));
}

Result<JwtClaims> verifyJwt(std::string_view token, std::string_view key, TimeMs now_ms) {
  auto d1 = token.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return unauthorized("the jwt is malformed: expected header.payload.signature");
  auto header = base64UrlDecode(token.substr(0, d1));
  auto payload = base64UrlDecode(token.substr(d1 + 1, d2 - d1 - 1));
  auto sig = base64UrlDecode(token.substr(d2 + 1));
  if (!header || !payload || !sig) return unauthorized("the jwt is malformed: bad base64url");
  auto h = json::parseObject(*header);
  if (!h || json::getString(*h, "alg") != "HS256")
    return unauthorized("the jwt must be signed with HS256 by this server; get one from /signup");
  std::string expect = hmacSha256(key, token.substr(0, d2));
  if (sig->size() != expect.size() || CRYPTO_memcmp(sig->data(), expect.data(), expect.size()) != 0)
    return unauthorized("the jwt signature is invalid; get a new one from /signup");
  auto p = json::parseObject(*payload);
  if (!p) return unauthorized("the jwt payload is not a JSON object");
  JwtClaims c;
  c.sub = json::getString(*p, "sub");
  c.aud = json::getString(*p, "aud");
  c.iss = json::getString(*p, "iss");
  c.iat = json::getInt(*p, "iat");
  c.exp = json::getInt(*p, "exp");
  if (c.sub.empty()) return unauthorized("the jwt has no sub claim");
  if (c.exp != 0 && c.exp * 1000 <= now_ms)
    return unauthorized("the jwt has expired; get a new one from /signup");
  return c;
}

Result<std::string> loadOrCreateJwtKey(const std::string& data_dir) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(data_dir) / "keys";
  fs::path path = dir / "jwt.key";
  if (auto existing = readFile(path.string())) {
    std::string hex = *existing;
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
    std::string key = hexDecode(hex);
    if (key.size() >= 32) return key;
    return internalError(fmt::format("{} is corrupt: expected 64 hex digits", path.string()));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return internalError(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  std::string hex = randomHex(32);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return internalError(fmt::format("cannot create {}", path.string()));
  std::string line = hex + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::fsync(fd);
  ::close(fd);
  if (!ok) return internalError(fmt::format("cannot write {}", path.string()));
  return hexDecode(hex);
}

}  // namespace parley::server
