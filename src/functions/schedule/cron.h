#pragma once

// Cron expressions of function schedules (LivePerson Functions scheduling, bot-connector-spec
// §4.17): five fields, always evaluated in UTC, so there is no daylight-saving time to handle;
// the smallest interval is one minute.
//
//   minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12 or JAN-DEC)
//   day-of-week (0-7 or SUN-SAT; 0 and 7 are Sunday)
//
// Each field is a comma-separated list of `*`, a value `a`, a range `a-b` (a <= b), each
// optionally followed by `/step` (`*/15`, `10-40/10`; `a/step` means `a-<max>/step`). Names are
// three letters, any case, also in ranges (`MON-FRI`). The shorthands @yearly (@annually),
// @monthly, @weekly, @daily (@midnight) and @hourly are accepted.
//
// Day-of-month and day-of-week, as Vixie cron and cronie decide them: when both fields are
// restricted, a day matches if EITHER matches (`0 0 13 * FRI` runs on every 13th and on every
// Friday); when either field starts with `*` (`*`, `*/2`), a day must match BOTH (so
// `0 0 */2 * MON` runs on Mondays that fall on an odd day of the month).
//
// Not accepted, each with an error naming the field: Quartz's `?`, `L`, `W`, `#`, a seconds or
// year field, values out of range, backward ranges, a step of 0 or larger than the field's range,
// empty list items, and an expression no date ever matches (`0 0 30 2 *`). Expressions are at
// most 200 characters.
//
// A CronExpression is an immutable value; thread-safe to share.

#include <bitset>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"

namespace parley::functions::schedule {

// Longest accepted expression, in characters.
inline constexpr std::size_t kMaxCronLength = 200;

class CronExpression {
 public:
  // The expression, or Invalid with a message that quotes it and names the field at fault.
  static Result<CronExpression> parse(std::string_view text);

  // The first whole minute strictly after `after` (ms since the Unix epoch, UTC) that the
  // expression matches, in ms. nullopt only past the year 9999 (parse refuses expressions that
  // never match).
  std::optional<TimeMs> nextAfter(TimeMs after) const;
  // Whether the minute that contains `t` matches.
  bool matches(TimeMs t) const;
  // The expression as written (trimmed).
  const std::string& text() const { return text_; }

 private:
  CronExpression() = default;
  bool dayMatches(int day_of_month, int month, int weekday) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0 (Sunday)..6
  bool day_of_month_star_ = false;
  bool day_of_week_star_ = false;
};

}  // namespace parley::functions::schedule
