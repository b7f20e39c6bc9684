#pragma once

// A JSON Schema (draft-06 subset) compiled into a graph of nodes, with oneOf/anyOf branches that
// are discriminated by a `type` property dispatched by that property's value instead of being
// tried one by one. Private to connector/richcontent; the public API is validator.h.
//
// Supported keywords: type, properties, required, additionalProperties (bool or schema), enum,
// const, items (schema or tuple), additionalItems, minItems, maxItems, uniqueItems, minLength,
// maxLength (in Unicode code points), minimum, maximum, exclusiveMinimum, exclusiveMaximum,
// minProperties, maxProperties, format (uri; other formats are ignored, as ajv's
// unknownFormats:"ignore" does), oneOf, anyOf, allOf, not, $ref (bare file names, resolved by
// base name among the schema's files, with an optional #/json/pointer), definitions. Annotation
// keywords are ignored; unknown keywords are ignored with a warning; keywords that change the
// verdict and are not implemented (pattern, patternProperties, dependencies, ...) fail the load.
//
// Thread-safety: immutable after load(); validate() may be called from any number of threads.

#include <boost/json.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace parley::connector::richcontent {

// One problem found in a document: an RFC 6901 JSON pointer ("" is the whole document) and a
// message written for a bot developer.
struct ValidationError {
  std::string path;
  std::string message;

  bool operator==(const ValidationError&) const = default;
};

namespace detail {

// One path segment while walking a document; keys point into the document being validated.
struct PathSeg {
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;
};

// Collects errors with their paths. A null sink means "fast mode": stop at the first failure.
class ErrorSink {
 public:
  explicit ErrorSink(std::size_t max_errors, std::string prefix = "")
      : max_errors_(max_errors), prefix_(std::move(prefix)) {}

  void push(std::string_view key) { stack_.push_back(PathSeg{key, 0, false}); }
  void push(std::size_t index) { stack_.push_back(PathSeg{{}, index, true}); }
  void pop() { stack_.pop_back(); }
  // Adds an error at the current path (plus `child` when not empty).
  void add(std::string message, std::string_view child = {});
  void addAt(std::string path, std::string message);
  std::string currentPath(std::string_view child = {}) const;
  bool full() const { return errors_.size() >= max_errors_; }
  std::size_t size() const { return errors_.size(); }
  std::vector<ValidationError>& errors() { return errors_; }
  // A sink at the same path with its own error list.
  ErrorSink fork(std::size_t max_errors) const {
    ErrorSink s(max_errors, prefix_);
    s.stack_ = stack_;
    return s;
  }

 private:
  std::size_t max_errors_;
  std::string prefix_;
  std::vector<PathSeg> stack_;
  std::vector<ValidationError> errors_;
};

}  // namespace detail

// Whether oneOf/anyOf discriminated by `type` dispatch on it (kOn) or try every branch (kOff,
// the plain JSON Schema algorithm, kept to check that both give the same verdicts).
enum class Dispatching { kOn, kOff };

// Gives the text of a schema file by its base name ("button.json"); an error when there is none.
using SchemaReader = std::function<Result<std::string>(const std::string& file)>;

// A set of compiled schemas loaded from one directory or one set of files.
class CompiledSchema {
 public:
  // Loads `root_file` (e.g. "rich_content.json") from `dir` and every file it references.
  // Invalid when a file is missing, is not JSON, or uses an unsupported keyword.
  static Result<std::shared_ptr<const CompiledSchema>> load(
      const std::filesystem::path& dir, const std::string& root_file,
      Dispatching dispatching = Dispatching::kOn);
  // The same with the files given by `read` (e.g. files compiled into the binary).
  static Result<std::shared_ptr<const CompiledSchema>> load(
      const SchemaReader& read, const std::string& root_file,
      Dispatching dispatching = Dispatching::kOn);

  // True when `v` is valid. With a sink, records every error (up to the sink's limit) with paths
  // relative to the sink's current path; without one, returns at the first failure.
  bool validate(const boost::json::value& v, detail::ErrorSink* sink) const;

  // Non-fatal notes from compilation (ignored unknown keywords, ignored formats).
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Number of compiled nodes and of oneOf/anyOf nodes that dispatch on `type` (for tests).
  std::size_t nodeCountForTest() const { return nodes_.size(); }
  std::size_t dispatchCountForTest() const;

 private:
  enum TypeBit : std::uint8_t {
    kNull = 1,
    kBool = 2,
    kInteger = 4,
    kNumber = 8,  // any number (includes integers)
    kString = 16,
    kArray = 32,
    kObject = 64,
    kAnyType = 127,
  };
  enum class Format { kNone, kUri };

  // Which values of the discriminating `type` property a branch can accept.
  struct Disc {
    std::vector<std::string> values;  // accepted values of "type" when present
    bool requires_type = false;       // an object without "type" fails
  };
  struct Dispatch {
    bool enabled = false;
    // Value of "type" -> candidate branch positions (includes undiscriminated branches),
    // sorted by shortLex (length, then bytes).
    std::vector<std::pair<std::string, std::vector<int>>> by_value;
    std::vector<int> when_absent;           // no "type" key
    std::vector<int> when_other;            // "type" not a string, or not in by_value
    std::vector<std::string> known_values;  // sorted, for messages
  };
  struct Node {
    std::string where;  // "button.json" or "specialAction.json#/definitions/checked"
    std::string name;   // title or file base name, for messages ("button", "Publish Text")
    int ref = -1;       // $ref target; other keywords are ignored (draft-06)
    std::string ref_key;
    std::uint8_t types = kAnyType;
    bool has_type = false;
    // object
    std::vector<std::pair<std::string, int>> props;  // sorted by shortLex(name)
    std::vector<std::string> required;
    // props[i] is required; valid when every required name is in props (then the presence of
    // required properties is counted while walking the object instead of looked up).
    std::vector<char> prop_required;
    bool required_in_props = false;
    bool additional_false = false;
    int additional = -1;
    std::int64_t min_props = -1, max_props = -1;
    // array
    int items = -1;
    std::vector<int> tuple;
    bool has_tuple = false;
    bool additional_items_false = false;
    int additional_items = -1;
    std::int64_t min_items = -1, max_items = -1;
    bool unique_items = false;
    // string
    std::int64_t min_length = -1, max_length = -1;
    Format format = Format::kNone;
    // number
    std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum;
    // enum / const
    bool has_enum = false;
    std::vector<boost::json::value> enum_values;
    // combinators
    std::vector<int> one_of, any_of, all_of;
    int not_ = -1;
    Dispatch one_of_dispatch, any_of_dispatch;
  };
  friend class SchemaCompiler;

  bool check(int n, const boost::json::value& v, detail::ErrorSink* sink) const;
  bool checkObject(const Node& node, const boost::json::object& o, detail::ErrorSink* sink) const;
  bool checkArray(const Node& node, const boost::json::array& a, detail::ErrorSink* sink) const;
  bool checkAlternatives(const Node& node, const std::vector<int>& branches, const Dispatch& d,
                         bool exactly_one, const boost::json::value& v,
                         detail::ErrorSink* sink) const;
  const std::vector<int>* candidates(const std::vector<int>& branches, const Dispatch& d,
                                     const boost::json::value& v, std::vector<int>& scratch) const;
  int resolve(int n) const;
  std::string branchName(int n) const;

  std::vector<Node> nodes_;
  int root_ = -1;
  std::vector<std::string> warnings_;
};

// Orders strings by length, then bytes: most keys differ in length, so lookups rarely compare
// bytes.
// Keys are short, so an inline loop beats a call to memcmp.
inline bool shortLexLess(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[i]);
  return false;
}
inline bool bytesEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// Number of Unicode code points in UTF-8 text (continuation bytes are not counted).
std::size_t codePointCount(std::string_view utf8);

// `s` cut to at most `max_bytes` (at a code point boundary) plus "..." when it was longer.
std::string truncateUtf8(std::string_view s, std::size_t max_bytes);

// ajv's "full" `uri` format: an absolute URI (scheme ":" hier-part, optional query and fragment)
// per RFC 3986, ASCII only.
bool isAbsoluteUri(std::string_view s);

}  // namespace parley::connector::richcontent
