#include "common/names.h"

#include <gtest/gtest.h>

#include <string>

namespace parley {
namespace {

using namespace std::string_literals;

TEST(ValidateName, AcceptsPrintableUnicode) {
  EXPECT_TRUE(validateName("skill name", "general", 100));
  EXPECT_TRUE(validateName("skill name", "Ventes / après-vente", 100));
  EXPECT_TRUE(validateName("skill name", "日本語 サポート", 100));
  EXPECT_TRUE(validateName("skill name", "emoji \xF0\x9F\x98\x80 ok", 100));
}

TEST(ValidateName, RefusesControlCharactersWithAClearMessage) {
  for (const std::string& bad : {"a\0b"s, "tab\there"s, "new\nline"s, "del\x7f"s, "esc\x1b[31m"s,
                                 "c1 \xC2\x85 next line"s, "\0"s}) {
    auto st = validateName("skill name", bad, 100);
    ASSERT_FALSE(st) << bad;
    EXPECT_EQ(st.error().code, ErrorCode::kInvalid);
    EXPECT_NE(st.error().message.find("skill name contains the control character"),
              std::string::npos)
        << st.error().message;
  }
  EXPECT_NE(validateName("skill name", "a\0b"s, 100).error().message.find("U+0000"),
            std::string::npos);
}

TEST(ValidateName, RefusesMalformedUtf8) {
  for (const std::string& bad :
       {"\xC0\xAF"s, "\xED\xA0\x80"s, "\xF4\x90\x80\x80"s, "abc\xE2\x82"s, "\xFF"s}) {
    auto st = validateName("user loginName", bad, 100);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().message.find("not valid UTF-8"), std::string::npos);
  }
}

TEST(ValidateName, LengthInCharactersAtTheLimitAndOnePast) {
  EXPECT_TRUE(validateName("name", std::string(100, 'x'), 100));
  auto st = validateName("name", std::string(101, 'x'), 100);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("use at most 100"), std::string::npos);
  // 100 two-byte characters are 100 characters, not 200.
  std::string e_acute;
  for (int i = 0; i < 100; ++i) e_acute += "\xC3\xA9";
  EXPECT_TRUE(validateName("name", e_acute, 100));
}

TEST(ValidateName, RefusesEmptyAndEdgeSpaces) {
  EXPECT_FALSE(validateName("name", "", 100));
  EXPECT_FALSE(validateName("name", " x", 100));
  EXPECT_FALSE(validateName("name", "x ", 100));
  EXPECT_TRUE(validateName("name", "x y", 100));
}

}  // namespace
}  // namespace parley
