#include <gtest/gtest.h>

#include "server/server.h"

namespace parley::server {
namespace {

TEST(PublicUrl, AnswersTheAuthority) {
  EXPECT_EQ(checkPublicUrl("https://chat.example.com").value(), "chat.example.com");
  EXPECT_EQ(checkPublicUrl("https://127.0.0.1:9443/").value(), "127.0.0.1:9443");
  EXPECT_EQ(checkPublicUrl("http://[::1]:8080").value(), "[::1]:8080");
}

TEST(PublicUrl, RefusesWhatIsNotAnOrigin) {
  for (const char* bad :
       {"", "chat.example.com", "ftp://chat.example.com", "https://", "https://u:p@host",
        "https://host:0", "https://host:99999", "https://host/path", "https://host/?q=1",
        "https://host/#f", "https://host:x"}) {
    auto r = checkPublicUrl(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalid) << bad;
    }
  }
}

}  // namespace
}  // namespace parley::server
