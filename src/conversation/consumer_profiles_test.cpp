#include "conversation/consumer_profiles.h"

#include <gtest/gtest.h>

namespace parley::conversation {
namespace {

const AccountId kAcc("a");

TEST(ConsumerProfilesTest, LimitsHoldAtTheEdgeAndAReplacementCountsItsNewSizeOnly) {
  ConsumerProfiles p(ConsumerProfiles::Limits{.max_profile_bytes = 10, .max_total_bytes = 15});
  EXPECT_TRUE(p.set(kAcc, ConsumerId("c1"), std::string(10, 'x')));
  auto big = p.set(kAcc, ConsumerId("c2"), std::string(11, 'x'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kTooLarge);
  auto full = p.set(kAcc, ConsumerId("c2"), std::string(6, 'x'));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kLimitExceeded);
  EXPECT_FALSE(p.get(kAcc, ConsumerId("c2")));  // a refused set changes nothing
  EXPECT_TRUE(p.set(kAcc, ConsumerId("c2"), std::string(5, 'x')));
  EXPECT_TRUE(p.set(kAcc, ConsumerId("c1"), "{}"));
  EXPECT_EQ(p.bytes(), 7u);
  EXPECT_EQ(p.get(kAcc, ConsumerId("c1")), std::optional<std::string>("{}"));
  // Accounts are apart: the same consumer id in another account has no profile.
  EXPECT_FALSE(p.get(AccountId("b"), ConsumerId("c1")));
  p.erase(kAcc, ConsumerId("c1"));
  p.erase(kAcc, ConsumerId("never-set"));
  EXPECT_EQ(p.count(), 1u);
  EXPECT_EQ(p.bytes(), 5u);
  EXPECT_FALSE(p.get(kAcc, ConsumerId("c1")));
}

}  // namespace
}  // namespace parley::conversation
