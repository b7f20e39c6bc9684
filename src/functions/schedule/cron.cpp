#include "functions/schedule/cron.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <span>
#include <vector>

namespace parley::functions::schedule {
namespace {

namespace chr = std::chrono;

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED",
                                                       "THU", "FRI", "SAT"};

struct FieldSpec {
  std::string_view name;
  int min;
  int max;
  // Names for min, min+1, ... (empty: numbers only).
  std::span<const std::string_view> names;
  std::string_view range_hint;
};

constexpr FieldSpec kFields[5] = {
    {"minute", 0, 59, {}, "0-59"},
    {"hour", 0, 23, {}, "0-23"},
    {"day-of-month", 1, 31, {}, "1-31"},
    {"month", 1, 12, kMonthNames, "1-12 or JAN-DEC"},
    {"day-of-week", 0, 7, kDayNames, "0-7 or SUN-SAT (0 and 7 are Sunday)"},
};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
  return out;
}

// Parses one field into `bits` (indexes min..max). Errors are the field's part of the message.
class FieldParser {
 public:
  FieldParser(const FieldSpec& spec, std::string_view text) : spec_(spec), text_(text) {}

  Result<std::vector<bool>> parse() {
    std::vector<bool> bits(static_cast<std::size_t>(spec_.max) + 1, false);
    if (text_.empty()) return fail("is empty");
    for (std::string_view item : split(text_, ',')) {
      if (item.empty()) return fail("has an empty list item (two commas, or one at an end)");
      std::string_view base = item;
      int step = 1;
      bool has_step = false;
      if (auto slash = item.find('/'); slash != std::string_view::npos) {
        base = item.substr(0, slash);
        std::string_view s = item.substr(slash + 1);
        auto n = number(s);
        if (!n) return fail(fmt::format("has the step '{}', which is not a number", s));
        step = *n;
        has_step = true;
        if (step < 1 || step > spec_.max - spec_.min + 1)
          return fail(
              fmt::format("has the step {}; a step is 1 to {}", step, spec_.max - spec_.min + 1));
      }
      int lo = 0;
      int hi = 0;
      if (base == "*") {
        lo = spec_.min;
        hi = spec_.max;
      } else {
        auto dash = base.find('-');
        auto a = value(base.substr(0, dash));
        if (!a) return std::unexpected(a.error());
        lo = *a;
        if (dash != std::string_view::npos) {
          auto b = value(base.substr(dash + 1));
          if (!b) return std::unexpected(b.error());
          hi = *b;
          if (hi < lo)
            return fail(
                fmt::format("has the range '{}', which runs backwards; write the lower "
                            "value first",
                            base));
        } else {
          hi = has_step ? spec_.max : lo;
        }
      }
      for (int v = lo; v <= hi; v += step) bits[static_cast<std::size_t>(v)] = true;
    }
    return bits;
  }

 private:
  std::unexpected<Error> fail(std::string what) const {
    return invalid(fmt::format("the {} field '{}' {}", spec_.name, text_, what));
  }

  static std::optional<int> number(std::string_view s) {
    if (s.empty() || s.size() > 4) return std::nullopt;
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
  }

  Result<int> value(std::string_view s) const {
    if (s.empty()) return fail("has a range with a missing end");
    if (auto n = number(s)) {
      if (*n < spec_.min || *n > spec_.max)
        return fail(fmt::format("has {}, out of range {}", *n, spec_.range_hint));
      return *n;
    }
    std::string u = upper(s);
    for (std::size_t i = 0; i < spec_.names.size(); ++i)
      if (u == spec_.names[i]) return spec_.min + static_cast<int>(i);
    if (u == "?" || u == "L" || u.find('#') != std::string::npos || u.ends_with('W') ||
        u.ends_with('L'))
      return fail(fmt::format("has '{}', Quartz syntax that is not supported here", s));
    if (spec_.names.empty())
      return fail(fmt::format("has '{}', which is not a number {}", s, spec_.range_hint));
    return fail(
        fmt::format("has '{}', which is neither a number nor a name ({})", s, spec_.range_hint));
  }

  const FieldSpec& spec_;
  std::string_view text_;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<std::string_view> shorthand(std::string_view s) {
  const std::string u = upper(s);
  if (u == "@YEARLY" || u == "@ANNUALLY") return "0 0 1 1 *";
  if (u == "@MONTHLY") return "0 0 1 * *";
  if (u == "@WEEKLY") return "0 0 * * 0";
  if (u == "@DAILY" || u == "@MIDNIGHT") return "0 0 * * *";
  if (u == "@HOURLY") return "0 * * * *";
  return std::nullopt;
}

constexpr TimeMs kMinuteMs = 60'000;
// 400 Gregorian years repeat every date and weekday: a search this long finds any match.
constexpr int kSearchDays = 146'097 + 366;

}  // namespace

Result<CronExpression> CronExpression::parse(std::string_view input) {
  std::string_view text = trim(input);
  auto quoted = [&](const Error& e) {
    return invalid(fmt::format("cron expression '{}': {}", text, e.message));
  };
  if (text.empty())
    return invalid(
        "the cron expression is empty; write five fields: minute hour day-of-month month "
        "day-of-week (e.g. '*/15 * * * *')");
  if (text.size() > kMaxCronLength)
    return invalid(fmt::format("the cron expression has {} characters; at most {} are accepted",
                               text.size(), kMaxCronLength));
  std::string_view fields_text = text;
  if (text.front() == '@') {
    auto s = shorthand(text);
    if (!s)
      return invalid(
          fmt::format("cron expression '{}': unknown shorthand; use @yearly, "
                      "@annually, @monthly, @weekly, @daily, @midnight or @hourly",
                      text));
    fields_text = *s;
  }
  std::vector<std::string_view> fields;
  for (std::size_t i = 0; i < fields_text.size();) {
    while (i < fields_text.size() && std::isspace(static_cast<unsigned char>(fields_text[i]))) ++i;
    std::size_t start = i;
    while (i < fields_text.size() && !std::isspace(static_cast<unsigned char>(fields_text[i]))) ++i;
    if (i > start) fields.push_back(fields_text.substr(start, i - start));
  }
  if (fields.size() != 5)
    return invalid(fmt::format(
        "cron expression '{}' has {} field{}; write five: minute hour day-of-month month "
        "day-of-week (seconds and years are not supported)",
        text, fields.size(), fields.size() == 1 ? "" : "s"));

  CronExpression e;
  e.text_ = std::string(text);
  std::vector<bool> bits[5];
  for (int f = 0; f < 5; ++f) {
    auto b = FieldParser(kFields[f], fields[f]).parse();
    if (!b) return quoted(b.error());
    bits[f] = std::move(*b);
  }
  for (int m = 0; m < 60; ++m) e.minutes_[m] = bits[0][m];
  for (int h = 0; h < 24; ++h) e.hours_[h] = bits[1][h];
  for (int d = 1; d <= 31; ++d) e.days_[d] = bits[2][d];
  for (int m = 1; m <= 12; ++m) e.months_[m] = bits[3][m];
  for (int w = 0; w < 7; ++w) e.weekdays_[w] = bits[4][w];
  if (bits[4][7]) e.weekdays_[0] = true;
  e.day_of_month_star_ = fields[2].starts_with('*');
  e.day_of_week_star_ = fields[4].starts_with('*');
  if (!e.nextAfter(0))
    return invalid(fmt::format(
        "cron expression '{}' never matches a date (e.g. day-of-month 30 or 31 with month "
        "February only); check the day-of-month and month fields",
        text));
  return e;
}

bool CronExpression::dayMatches(int day_of_month, int month, int weekday) const {
  if (!months_[static_cast<std::size_t>(month)]) return false;
  const bool dom = days_[static_cast<std::size_t>(day_of_month)];
  const bool dow = weekdays_[static_cast<std::size_t>(weekday)];
  if (day_of_month_star_ || day_of_week_star_) return dom && dow;
  return dom || dow;
}

bool CronExpression::matches(TimeMs t) const {
  const chr::sys_time<chr::milliseconds> tp{chr::milliseconds(t)};
  const auto day = chr::floor<chr::days>(tp);
  const chr::year_month_day ymd{day};
  const chr::weekday wd{day};
  const auto minute_of_day = chr::duration_cast<chr::minutes>(tp - day).count();
  return dayMatches(static_cast<int>(static_cast<unsigned>(ymd.day())),
                    static_cast<int>(static_cast<unsigned>(ymd.month())),
                    static_cast<int>(wd.c_encoding())) &&
         hours_[static_cast<std::size_t>(minute_of_day / 60)] &&
         minutes_[static_cast<std::size_t>(minute_of_day % 60)];
}

std::optional<TimeMs> CronExpression::nextAfter(TimeMs after) const {
  // The first whole minute strictly after `after`.
  TimeMs start = after - ((after % kMinuteMs) + kMinuteMs) % kMinuteMs + kMinuteMs;
  const chr::sys_time<chr::milliseconds> tp{chr::milliseconds(start)};
  auto day = chr::floor<chr::days>(tp);
  int first_minute = static_cast<int>(chr::duration_cast<chr::minutes>(tp - day).count());
  const auto last_day = chr::sys_days{chr::year{9999} / 12 / 31};
  for (int i = 0; i < kSearchDays && day <= last_day; ++i, day += chr::days{1}, first_minute = 0) {
    const chr::year_month_day ymd{day};
    if (!dayMatches(static_cast<int>(static_cast<unsigned>(ymd.day())),
                    static_cast<int>(static_cast<unsigned>(ymd.month())),
                    static_cast<int>(chr::weekday{day}.c_encoding())))
      continue;
    for (int m = first_minute; m < 24 * 60; ++m) {
      if (!hours_[static_cast<std::size_t>(m / 60)]) {
        m = (m / 60) * 60 + 59;  // skip the rest of this hour
        continue;
      }
      if (minutes_[static_cast<std::size_t>(m % 60)])
        return chr::duration_cast<chr::milliseconds>(day.time_since_epoch()).count() +
               m * kMinuteMs;
    }
  }
  return std::nullopt;
}

}  // namespace parley::functions::schedule
