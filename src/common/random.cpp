#include "common/random.h"

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/check.h"

namespace parley {
namespace {

void ensureSodium() {
  static const int rc = sodium_init();
  PARLEY_CHECK(rc >= 0, "sodium_init failed");
}

// Random bytes from the OS CSPRNG (libsodium's randombytes_buf, i.e. getrandom), drawn 512
// bytes at a time per thread: ids are made on every bot turn, and one system call per id was
// ~1 % of a turn's CPU. A thread's buffer is never shared, and each byte is handed out once.
void fillRandom(unsigned char* out, std::size_t n) {
  constexpr std::size_t kPool = 512;
  if (n > kPool / 8) {
    randombytes_buf(out, n);
    return;
  }
  thread_local std::array<unsigned char, kPool> pool;
  thread_local std::size_t used = kPool;
  if (kPool - used < n) {
    randombytes_buf(pool.data(), pool.size());
    used = 0;
  }
  std::memcpy(out, pool.data() + used, n);
  sodium_memzero(pool.data() + used, n);
  used += n;
}

std::string toHex(const unsigned char* data, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xF];
  }
  return out;
}

}  // namespace

std::string randomUuid() {
  ensureSodium();
  std::array<unsigned char, 16> b{};
  fillRandom(b.data(), b.size());
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  std::string hex = toHex(b.data(), b.size());
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string randomHex(std::size_t bytes) {
  ensureSodium();
  std::string raw(bytes, '\0');
  fillRandom(reinterpret_cast<unsigned char*>(raw.data()), raw.size());
  return toHex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

}  // namespace parley
