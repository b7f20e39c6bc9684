#include "functions/schedule/cron.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace parley::functions::schedule {
namespace {

namespace chr = std::chrono;

// ms since the epoch of y-m-d h:mi (UTC).
TimeMs at(int y, unsigned m, unsigned d, int h = 0, int mi = 0, int s = 0) {
  auto day = chr::sys_days{chr::year{y} / chr::month{m} / chr::day{d}};
  return chr::duration_cast<chr::milliseconds>(
             (day + chr::hours{h} + chr::minutes{mi} + chr::seconds{s}).time_since_epoch())
      .count();
}

CronExpression cron(const std::string& text) {
  auto c = CronExpression::parse(text);
  EXPECT_TRUE(c) << text << ": " << c.error().message;
  return *c;
}

TimeMs next(const std::string& text, TimeMs after) {
  auto n = cron(text).nextAfter(after);
  EXPECT_TRUE(n) << text;
  return n.value_or(-1);
}

std::string refusal(const std::string& text) {
  auto c = CronExpression::parse(text);
  EXPECT_FALSE(c) << text << " was accepted";
  return c ? std::string() : c.error().message;
}

TEST(Cron, NextIsTheFirstMatchingMinuteStrictlyAfter) {
  EXPECT_EQ(next("*/15 * * * *", at(2026, 12, 7, 10, 7)), at(2026, 12, 7, 10, 15));
  EXPECT_EQ(next("*/15 * * * *", at(2026, 12, 7, 10, 15)), at(2026, 12, 7, 10, 30));
  EXPECT_EQ(next("*/15 * * * *", at(2026, 12, 7, 10, 14, 59) + 999), at(2026, 12, 7, 10, 15));
  EXPECT_EQ(next("*/15 * * * *", at(2026, 12, 7, 23, 59, 30)), at(2026, 12, 8, 0, 0));
  EXPECT_EQ(next("* * * * *", at(2026, 12, 31, 23, 59)), at(2027, 1, 1, 0, 0));
  EXPECT_EQ(next("0 0 1 1 *", at(2026, 12, 7)), at(2027, 1, 1));
}

TEST(Cron, RangesStepsListsAndNames) {
  // 5,10,15,20 and 45 past, 9 to 17 h, Monday to Friday.
  const auto c = cron("5-20/5,45 9-17 * * MON-FRI");
  EXPECT_EQ(c.nextAfter(at(2026, 12, 7, 9, 0)), at(2026, 12, 7, 9, 5));  // Monday
  EXPECT_EQ(c.nextAfter(at(2026, 12, 7, 9, 20)), at(2026, 12, 7, 9, 45));
  EXPECT_EQ(c.nextAfter(at(2026, 12, 7, 17, 45)), at(2026, 12, 8, 9, 5));
  EXPECT_EQ(c.nextAfter(at(2026, 12, 11, 17, 45)), at(2026, 12, 14, 9, 5));  // Friday → Monday
  // Names in any case, in lists; `a/step` runs to the field's end.
  EXPECT_EQ(next("0 12 * jan,Jul SUN", at(2026, 12, 7)), at(2027, 1, 3, 12, 0));
  EXPECT_EQ(next("10/20 * * * *", at(2026, 12, 7, 10, 51)), at(2026, 12, 7, 11, 10));
  EXPECT_EQ(next("10/20 * * * *", at(2026, 12, 7, 10, 31)), at(2026, 12, 7, 10, 50));
  // 7 is Sunday too. 2026-12-07 is a Monday.
  EXPECT_EQ(next("0 0 * * 7", at(2026, 12, 7)), at(2026, 12, 13));
  EXPECT_EQ(next("0 0 * * 0", at(2026, 12, 7)), at(2026, 12, 13));
  EXPECT_EQ(next("0 0 * * 5-7", at(2026, 12, 7)), at(2026, 12, 11));
  EXPECT_EQ(next("@hourly", at(2026, 12, 7, 10, 1)), at(2026, 12, 7, 11, 0));
  EXPECT_EQ(next("@daily", at(2026, 12, 7, 10, 1)), at(2026, 12, 8));
  EXPECT_EQ(next("@weekly", at(2026, 12, 7, 10, 1)), at(2026, 12, 13));
  EXPECT_EQ(next("@monthly", at(2026, 12, 7, 10, 1)), at(2027, 1, 1));
  EXPECT_EQ(next("@annually", at(2026, 12, 7, 10, 1)), at(2027, 1, 1));
  EXPECT_EQ(cron("  0 * * * *  ").text(), "0 * * * *");
}

TEST(Cron, February29ComesOnlyInLeapYears) {
  EXPECT_EQ(next("0 0 29 2 *", at(2024, 2, 28)), at(2024, 2, 29));
  EXPECT_EQ(next("0 0 29 2 *", at(2024, 3, 1)), at(2028, 2, 29));
  // 2100 is not a leap year (divisible by 100, not by 400): eight years between the two.
  EXPECT_EQ(next("0 0 29 2 *", at(2096, 3, 1)), at(2104, 2, 29));
  // 2000 was (divisible by 400).
  EXPECT_EQ(next("0 0 29 2 *", at(1999, 1, 1)), at(2000, 2, 29));
  // The 31st skips the months that have none.
  EXPECT_EQ(next("0 0 31 * *", at(2026, 4, 1)), at(2026, 5, 31));
  EXPECT_EQ(next("0 0 30 * *", at(2027, 2, 1)), at(2027, 3, 30));
}

TEST(Cron, DayOfMonthAndDayOfWeekMatchEitherWhenBothAreRestricted) {
  // Both restricted: every 13th and every Friday. 2026-12-04 is a Friday, the 13th a Sunday.
  const auto either = cron("0 0 13 * FRI");
  EXPECT_EQ(either.nextAfter(at(2026, 12, 1)), at(2026, 12, 4));
  EXPECT_EQ(either.nextAfter(at(2026, 12, 11)), at(2026, 12, 13));
  EXPECT_EQ(either.nextAfter(at(2026, 12, 13)), at(2026, 12, 18));
  // A field starting with '*' (cronie's rule): then both must match — Mondays on odd days.
  const auto both = cron("0 0 */2 * MON");
  EXPECT_EQ(both.nextAfter(at(2026, 12, 6)), at(2026, 12, 7));   // Monday the 7th
  EXPECT_EQ(both.nextAfter(at(2026, 12, 7)), at(2026, 12, 21));  // not Monday the 14th
  EXPECT_FALSE(both.matches(at(2026, 12, 14)));
  EXPECT_TRUE(both.matches(at(2026, 12, 21)));
  // Day-of-week alone.
  EXPECT_EQ(next("0 0 * * MON", at(2026, 12, 8)), at(2026, 12, 14));
  // Day-of-month alone.
  EXPECT_EQ(next("0 0 13 * *", at(2026, 12, 8)), at(2026, 12, 13));
}

TEST(Cron, UtcHasNoDaylightSavingTime) {
  // Across the days Europe (2026-03-29, 2026-10-25) and the USA (2026-03-08, 2026-11-01) change
  // their clocks, a daily 02:30 run stays exactly 24 h apart and 02:30 always exists.
  const auto daily = cron("30 2 * * *");
  for (auto [m, d] : {std::pair{3u, 7u}, {3u, 28u}, {10u, 24u}, {10u, 31u}}) {
    TimeMs a = *daily.nextAfter(at(2026, m, d));
    TimeMs b = *daily.nextAfter(a);
    EXPECT_EQ(a, at(2026, m, d, 2, 30));
    EXPECT_EQ(b - a, 24 * 3600 * 1000);
  }
}

TEST(Cron, MatchesTheMinuteThatContainsATime) {
  const auto c = cron("30 14 * * *");
  EXPECT_TRUE(c.matches(at(2026, 12, 7, 14, 30)));
  EXPECT_TRUE(c.matches(at(2026, 12, 7, 14, 30, 59)));
  EXPECT_FALSE(c.matches(at(2026, 12, 7, 14, 31)));
}

TEST(Cron, InvalidExpressionsAreRefusedNamingTheField) {
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  };
  has(refusal("60 * * * *"), "the minute field '60' has 60, out of range 0-59");
  has(refusal("0 24 * * *"), "the hour field '24'");
  has(refusal("0 0 0 * *"), "the day-of-month field '0' has 0, out of range 1-31");
  has(refusal("0 0 32 * *"), "day-of-month field '32'");
  has(refusal("0 0 * 13 *"), "the month field '13' has 13, out of range 1-12 or JAN-DEC");
  has(refusal("0 0 * FOO *"), "month field 'FOO' has 'FOO', which is neither a number nor a name");
  has(refusal("0 0 * * 8"), "the day-of-week field '8'");
  has(refusal("0 0 * * MONDAY"), "day-of-week field 'MONDAY'");
  has(refusal("*/0 * * * *"), "the minute field '*/0' has the step 0");
  has(refusal("*/61 * * * *"), "the minute field '*/61' has the step 61; a step is 1 to 60");
  has(refusal("*/x * * * *"), "the step 'x', which is not a number");
  has(refusal("30-10 * * * *"),
      "the minute field '30-10' has the range '30-10', which runs "
      "backwards");
  has(refusal("1,,2 * * * *"), "the minute field '1,,2' has an empty list item");
  has(refusal("1- * * * *"), "the minute field '1-' has a range with a missing end");
  has(refusal("a * * * *"), "the minute field 'a' has 'a', which is not a number 0-59");
  has(refusal("0 0 ? * MON"), "the day-of-month field '?' has '?', Quartz syntax");
  has(refusal("0 0 L * *"), "Quartz syntax");
  has(refusal("0 0 15W * *"), "Quartz syntax");
  has(refusal("0 0 * * 5#3"), "Quartz syntax");
  has(refusal("0 0 * *"), "has 4 fields; write five");
  has(refusal("0 0 0 * * *"), "has 6 fields");
  has(refusal(""), "the cron expression is empty");
  has(refusal("   "), "the cron expression is empty");
  has(refusal("@reboot"), "unknown shorthand");
  has(refusal(std::string(201, '*')), "at most 200");
  // Each message quotes the expression.
  has(refusal("61 * * * *"), "cron expression '61 * * * *'");
  // Valid fields that no date ever matches.
  has(refusal("0 0 30 2 *"), "never matches a date");
  has(refusal("0 0 31 4,6,9,11 *"), "never matches a date");
}

}  // namespace
}  // namespace parley::functions::schedule
