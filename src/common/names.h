#pragma once

// One check for every name and id that enters from outside (skills, users, bots, functions,
// accounts, API keys, ...): not empty, at most a given length, valid UTF-8, and no control
// characters (C0 incl. NUL, DEL, C1), which would be invisible in the console, truncate C strings
// and break logs. Pure; thread-safe.

#include <cstddef>
#include <string_view>

#include "common/result.h"

namespace parley {

// Invalid with a message that names `what` (e.g. "skill name"), says what is wrong and what to
// do, when `value` is empty, longer than `max_chars` characters (code points), not valid UTF-8,
// or contains a control character (U+0000-U+001F, U+007F-U+009F). Leading or trailing spaces
// are refused too (two names that look the same must not differ by them).
Status validateName(std::string_view what, std::string_view value, std::size_t max_chars);

}  // namespace parley
