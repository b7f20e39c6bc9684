#pragma once

// Private to richcontent/: how schema.cpp and validator.cpp name the kind of a JSON value in
// their error messages ("must be a string, got an object").

#include <boost/json/value.hpp>

namespace parley::connector::richcontent::detail {

// Whether integral values are named "an integer" or, like every other number, "a number".
// The schema names them apart because JSON Schema's "integer" type does; the semantic checks
// in validator.cpp only ever ask for a number or something else.
enum class IntegerName { kInteger, kNumber };

// "null", "a boolean", "an integer" or "a number", "a string", "an array" or "an object".
// The result is a string literal.
inline const char* kindName(const boost::json::value& v, IntegerName integers) {
  switch (v.kind()) {
    case boost::json::kind::null:
      return "null";
    case boost::json::kind::bool_:
      return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return integers == IntegerName::kInteger ? "an integer" : "a number";
    case boost::json::kind::double_:
      return "a number";
    case boost::json::kind::string:
      return "a string";
    case boost::json::kind::array:
      return "an array";
    case boost::json::kind::object:
      return "an object";
  }
  return "a value";
}

}  // namespace parley::connector::richcontent::detail
