#include "server/jwt.h"

#include <gtest/gtest.h>

namespace parley::server {
namespace {

TEST(Jwt, SignsAndVerifies) {
  JwtClaims c{"consumer-1", "acc:123", "parley", 1000, 2000};
  std::string t = signJwt(c, "k");
  auto v = verifyJwt(t, "k", 1500 * 1000);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->sub, "consumer-1");
  EXPECT_EQ(v->aud, "acc:123");
}

TEST(Jwt, RejectsWrongKeyExpiredAndGarbage) {
  JwtClaims c{"c", "acc:1", "parley", 1000, 2000};
  std::string t = signJwt(c, "k");
  EXPECT_FALSE(verifyJwt(t, "other", 1500 * 1000));
  EXPECT_FALSE(verifyJwt(t, "k", 2001 * 1000));
  EXPECT_FALSE(verifyJwt("garbage", "k", 0));
  EXPECT_FALSE(verifyJwt("a.b.c", "k", 0));
  std::string tampered = t;
  tampered[tampered.find('.') + 2] ^= 1;
  EXPECT_FALSE(verifyJwt(tampered, "k", 1500 * 1000));
}

TEST(Jwt, Base64UrlRoundTrip) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "\xff\xfe\x00\x01"}) {
    auto d = base64UrlDecode(base64UrlEncode(s));
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64UrlEncode("\xfb\xff"), "-_8");
}

}  // namespace
}  // namespace parley::server
