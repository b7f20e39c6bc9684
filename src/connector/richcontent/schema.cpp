#include "connector/richcontent/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "connector/richcontent/json_kind.h"

namespace parley::connector::richcontent {

namespace bj = boost::json;

// ---------------------------------------------------------------------------------------------
// Text helpers

std::size_t codePointCount(std::string_view utf8) {
  std::size_t n = 0;
  for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
  return n;
}

std::string truncateUtf8(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool isUnreserved(char c) {
  return isAlpha(c) || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool isSubDelim(char c) {
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

// Checks that every character of `s` is a pchar, or one of `extra`, with well-formed
// percent-encoding.
bool allPchars(std::string_view s, std::string_view extra) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || !isHex(s[i + 1]) || !isHex(s[i + 2])) return false;
      i += 2;
      continue;
    }
    if (isUnreserved(c) || isSubDelim(c) || c == ':' || c == '@') continue;
    if (extra.find(c) != std::string_view::npos) continue;
    return false;
  }
  return true;
}

// An IP-literal host "[...]" (IPv6 or IPvFuture), checked loosely: allowed characters only.
bool isIpLiteral(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string_view in = s.substr(1, s.size() - 2);
  if (in[0] == 'v' || in[0] == 'V') {
    std::size_t dot = in.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 >= in.size()) return false;
    for (std::size_t i = 1; i < dot; ++i)
      if (!isHex(in[i])) return false;
    for (char c : in.substr(dot + 1))
      if (!(isUnreserved(c) || isSubDelim(c) || c == ':')) return false;
    return true;
  }
  for (char c : in)
    if (!(isHex(c) || c == ':' || c == '.')) return false;
  return in.find(':') != std::string_view::npos;
}

// "//" authority path-abempty, where the authority holds an IP literal (the only authority that
// is not also a valid path of pchars).
bool isAuthorityWithIpLiteral(std::string_view hier) {
  std::size_t start = hier.starts_with("//") ? 2 : 1;
  std::string_view rest = hier.substr(start);
  std::size_t slash = rest.find('/');
  std::string_view auth = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  std::size_t at = auth.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = auth.substr(0, at);
    if (userinfo.find('@') != std::string_view::npos || !allPchars(userinfo, "")) return false;
    auth = auth.substr(at + 1);
  }
  std::size_t close = auth.find(']');
  if (close == std::string_view::npos) return false;
  if (!isIpLiteral(auth.substr(0, close + 1))) return false;
  std::string_view port = auth.substr(close + 1);
  if (!port.empty()) {
    if (port[0] != ':') return false;
    for (char c : port.substr(1))
      if (!isDigit(c)) return false;
  }
  return allPchars(path, "/");
}

}  // namespace

bool isAbsoluteUri(std::string_view s) {
  // scheme
  if (s.empty() || !isAlpha(s[0])) return false;
  std::size_t i = 1;
  while (i < s.size() &&
         (isAlpha(s[i]) || isDigit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
    ++i;
  if (i >= s.size() || s[i] != ':') return false;
  std::string_view rest = s.substr(i + 1);
  std::size_t q = rest.find_first_of("?#");
  std::string_view hier = rest.substr(0, q);
  std::string_view tail = q == std::string_view::npos ? std::string_view{} : rest.substr(q);
  if (hier.empty()) return false;
  bool hier_ok = allPchars(hier, "/");
  if (!hier_ok && hier[0] == '/') hier_ok = isAuthorityWithIpLiteral(hier);
  if (!hier_ok) return false;
  if (!tail.empty() && tail[0] == '?') {
    std::size_t h = tail.find('#');
    if (!allPchars(tail.substr(1, h == std::string_view::npos ? h : h - 1), "/?")) return false;
    tail = h == std::string_view::npos ? std::string_view{} : tail.substr(h);
  }
  if (!tail.empty() && !allPchars(tail.substr(1), "/?")) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// ErrorSink

namespace detail {

namespace {
void appendEscaped(std::string& out, std::string_view key) {
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
}
}  // namespace

std::string ErrorSink::currentPath(std::string_view child) const {
  std::string p = prefix_;
  for (const auto& s : stack_) {
    p += '/';
    if (s.is_index)
      p += std::to_string(s.index);
    else
      appendEscaped(p, s.key);
  }
  if (!child.empty()) {
    p += '/';
    appendEscaped(p, child);
  }
  return p;
}

void ErrorSink::add(std::string message, std::string_view child) {
  if (full()) return;
  errors_.push_back(ValidationError{currentPath(child), std::move(message)});
}

void ErrorSink::addAt(std::string path, std::string message) {
  if (full()) return;
  errors_.push_back(ValidationError{std::move(path), std::move(message)});
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Compiler

namespace {

std::string baseName(std::string_view path) {
  std::size_t slash = path.find_last_of('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string stem(std::string_view file) {
  std::string b = baseName(file);
  if (b.ends_with(".json")) b.resize(b.size() - 5);
  return b;
}

const std::set<std::string, std::less<>>& annotationKeywords() {
  static const std::set<std::string, std::less<>> k = {
      "title", "description", "default",  "readonly",    "readOnly", "$schema",
      "$id",   "id",          "examples", "definitions", "$comment", "writeOnly"};
  return k;
}

const std::set<std::string, std::less<>>& unsupportedKeywords() {
  static const std::set<std::string, std::less<>> k = {
      "pattern", "patternProperties", "dependencies", "propertyNames", "contains", "if", "then",
      "else",    "multipleOf"};
  return k;
}

}  // namespace

class SchemaCompiler {
 public:
  SchemaCompiler(const SchemaReader& read, CompiledSchema& out) : read_(read), out_(out) {}

  Result<int> compileRef(const std::string& file, const std::string& pointer) {
    std::string key = file + "#" + pointer;
    if (auto it = memo_.find(key); it != memo_.end()) return it->second;
    auto doc = loadFile(file);
    if (!doc) return std::unexpected(doc.error());
    const bj::value* target = *doc;
    if (!pointer.empty()) {
      boost::system::error_code ec;
      target = (*doc)->find_pointer(pointer, ec);
      if (!target)
        return invalid(fmt::format("schema {}: $ref target #{} does not exist", file, pointer));
    }
    int idx = static_cast<int>(out_.nodes_.size());
    out_.nodes_.emplace_back();
    memo_[key] = idx;
    std::string name = pointer.empty() ? stem(file) : baseName(pointer);
    auto node = compileNode(*target, file, pointer, name);
    if (!node) return std::unexpected(node.error());
    out_.nodes_[idx] = std::move(*node);
    return idx;
  }

  void buildDispatch() {
    for (std::size_t i = 0; i < out_.nodes_.size(); ++i) {
      auto& n = out_.nodes_[i];
      if (n.one_of.size() > 1) n.one_of_dispatch = makeDispatch(n.one_of);
      if (n.any_of.size() > 1) n.any_of_dispatch = makeDispatch(n.any_of);
    }
  }

 private:
  using Node = CompiledSchema::Node;
  using Disc = CompiledSchema::Disc;
  using Dispatch = CompiledSchema::Dispatch;

  Result<const bj::value*> loadFile(const std::string& file) {
    if (auto it = docs_.find(file); it != docs_.end()) return it->second.get();
    auto text = read_(file);
    if (!text) return std::unexpected(text.error());
    boost::system::error_code ec;
    bj::value v = bj::parse(*text, ec);
    if (ec) return invalid(fmt::format("schema file {} is not JSON: {}", file, ec.message()));
    auto owned = std::make_unique<bj::value>(std::move(v));
    const bj::value* raw = owned.get();
    docs_[file] = std::move(owned);
    return raw;
  }

  Result<int> compileChild(const bj::value& v, const std::string& file, const std::string& ptr,
                           const std::string& name) {
    int idx = static_cast<int>(out_.nodes_.size());
    out_.nodes_.emplace_back();
    auto node = compileNode(v, file, ptr, name);
    if (!node) return std::unexpected(node.error());
    out_.nodes_[idx] = std::move(*node);
    return idx;
  }

  Result<std::int64_t> nonNegInt(const bj::value& v, std::string_view where, std::string_view kw) {
    if (v.is_int64() && v.as_int64() >= 0) return v.as_int64();
    if (v.is_uint64()) return static_cast<std::int64_t>(v.as_uint64());
    if (v.is_double() && v.as_double() >= 0 && std::floor(v.as_double()) == v.as_double())
      return static_cast<std::int64_t>(v.as_double());
    return invalid(fmt::format("schema {}: {} must be a non-negative integer", where, kw));
  }

  Result<double> number(const bj::value& v, std::string_view where, std::string_view kw) {
    if (v.is_int64()) return static_cast<double>(v.as_int64());
    if (v.is_uint64()) return static_cast<double>(v.as_uint64());
    if (v.is_double()) return v.as_double();
    return invalid(fmt::format("schema {}: {} must be a number", where, kw));
  }

  Result<std::vector<int>> compileList(const bj::value& v, const std::string& file,
                                       const std::string& ptr, std::string_view kw) {
    if (!v.is_array() || v.as_array().empty())
      return invalid(fmt::format("schema {}#{}: {} must be a non-empty array", file, ptr, kw));
    std::vector<int> out;
    std::size_t i = 0;
    for (const auto& s : v.as_array()) {
      auto c = compileChild(s, file, fmt::format("{}/{}/{}", ptr, kw, i++), "");
      if (!c) return std::unexpected(c.error());
      out.push_back(*c);
    }
    return out;
  }

  Result<Node> compileNode(const bj::value& v, const std::string& file, const std::string& ptr,
                           const std::string& default_name) {
    Node n;
    n.where = ptr.empty() ? file : file + "#" + ptr;
    n.name = default_name;
    if (v.is_bool()) {
      if (!v.as_bool()) {
        n.has_type = true;
        n.types = 0;
      }
      return n;
    }
    if (!v.is_object())
      return invalid(fmt::format("schema {}: a schema must be an object", n.where));
    const bj::object& o = v.as_object();
    if (auto t = o.find("title"); t != o.end() && t->value().is_string())
      n.name = std::string(t->value().as_string());

    if (auto r = o.find("$ref"); r != o.end()) {
      if (!r->value().is_string())
        return invalid(fmt::format("schema {}: $ref must be a string", n.where));
      std::string_view ref = r->value().as_string();
      std::size_t hash = ref.find('#');
      std::string target_file =
          hash == 0 ? file
                    : baseName(ref.substr(0, hash == std::string_view::npos ? ref.size() : hash));
      std::string pointer = hash == std::string_view::npos ? "" : std::string(ref.substr(hash + 1));
      auto t = compileRef(target_file, pointer);
      if (!t) return std::unexpected(t.error());
      n.ref = *t;
      n.ref_key = target_file + "#" + pointer;
      return n;
    }

    for (const auto& kv : o) {
      std::string_view k = kv.key();
      const bj::value& val = kv.value();
      std::string sub = fmt::format("{}/{}", ptr, k);
      if (annotationKeywords().contains(k)) continue;
      if (unsupportedKeywords().contains(k))
        return invalid(fmt::format("schema {}: keyword \"{}\" is not supported", n.where, k));
      if (k == "type") {
        n.has_type = true;
        n.types = 0;
        auto add = [&](const bj::value& t) -> Status {
          if (!t.is_string())
            return invalid(fmt::format("schema {}: type must be a string", n.where));
          std::string_view s = t.as_string();
          if (s == "object")
            n.types |= CompiledSchema::kObject;
          else if (s == "array")
            n.types |= CompiledSchema::kArray;
          else if (s == "string")
            n.types |= CompiledSchema::kString;
          else if (s == "integer")
            n.types |= CompiledSchema::kInteger;
          else if (s == "number")
            n.types |= CompiledSchema::kNumber | CompiledSchema::kInteger;
          else if (s == "boolean")
            n.types |= CompiledSchema::kBool;
          else if (s == "null")
            n.types |= CompiledSchema::kNull;
          else
            return invalid(fmt::format("schema {}: unknown type \"{}\"", n.where, s));
          return {};
        };
        if (val.is_array()) {
          for (const auto& t : val.as_array())
            if (auto st = add(t); !st) return std::unexpected(st.error());
        } else if (auto st = add(val); !st) {
          return std::unexpected(st.error());
        }
      } else if (k == "properties") {
        if (!val.is_object())
          return invalid(fmt::format("schema {}: properties must be an object", n.where));
        for (const auto& p : val.as_object()) {
          auto c = compileChild(p.value(), file, fmt::format("{}/{}", sub, p.key()), "");
          if (!c) return std::unexpected(c.error());
          n.props.emplace_back(std::string(p.key()), *c);
        }
        std::sort(n.props.begin(), n.props.end(),
                  [](const auto& a, const auto& b) { return shortLexLess(a.first, b.first); });
      } else if (k == "required") {
        if (!val.is_array())
          return invalid(fmt::format("schema {}: required must be an array", n.where));
        for (const auto& r : val.as_array()) {
          if (!r.is_string())
            return invalid(fmt::format("schema {}: required entries must be strings", n.where));
          n.required.emplace_back(r.as_string());
        }
      } else if (k == "additionalProperties") {
        if (val.is_bool()) {
          n.additional_false = !val.as_bool();
        } else {
          auto c = compileChild(val, file, sub, "");
          if (!c) return std::unexpected(c.error());
          n.additional = *c;
        }
      } else if (k == "minProperties" || k == "maxProperties") {
        auto x = nonNegInt(val, n.where, k);
        if (!x) return std::unexpected(x.error());
        (k == "minProperties" ? n.min_props : n.max_props) = *x;
      } else if (k == "items") {
        if (val.is_array()) {
          n.has_tuple = true;
          std::size_t i = 0;
          for (const auto& s : val.as_array()) {
            auto c = compileChild(s, file, fmt::format("{}/{}", sub, i++), "");
            if (!c) return std::unexpected(c.error());
            n.tuple.push_back(*c);
          }
        } else {
          auto c = compileChild(val, file, sub, "");
          if (!c) return std::unexpected(c.error());
          n.items = *c;
        }
      } else if (k == "additionalItems") {
        if (val.is_bool()) {
          n.additional_items_false = !val.as_bool();
        } else {
          auto c = compileChild(val, file, sub, "");
          if (!c) return std::unexpected(c.error());
          n.additional_items = *c;
        }
      } else if (k == "minItems" || k == "maxItems") {
        auto x = nonNegInt(val, n.where, k);
        if (!x) return std::unexpected(x.error());
        (k == "minItems" ? n.min_items : n.max_items) = *x;
      } else if (k == "uniqueItems") {
        n.unique_items = val.is_bool() && val.as_bool();
      } else if (k == "minLength" || k == "maxLength") {
        auto x = nonNegInt(val, n.where, k);
        if (!x) return std::unexpected(x.error());
        (k == "minLength" ? n.min_length : n.max_length) = *x;
      } else if (k == "minimum" || k == "maximum" || k == "exclusiveMinimum" ||
                 k == "exclusiveMaximum") {
        if (val.is_bool())
          return invalid(
              fmt::format("schema {}: boolean {} is draft-04; use a number", n.where, k));
        auto x = number(val, n.where, k);
        if (!x) return std::unexpected(x.error());
        if (k == "minimum") n.minimum = *x;
        if (k == "maximum") n.maximum = *x;
        if (k == "exclusiveMinimum") n.exclusive_minimum = *x;
        if (k == "exclusiveMaximum") n.exclusive_maximum = *x;
      } else if (k == "format") {
        if (val.is_string() && val.as_string() == "uri") {
          n.format = CompiledSchema::Format::kUri;
        } else {
          out_.warnings_.push_back(
              fmt::format("{}: format {} is not checked (unknown formats are ignored, as in ajv)",
                          n.where, bj::serialize(val)));
        }
      } else if (k == "enum") {
        if (!val.is_array() || val.as_array().empty())
          return invalid(fmt::format("schema {}: enum must be a non-empty array", n.where));
        n.has_enum = true;
        for (const auto& e : val.as_array()) n.enum_values.push_back(e);
      } else if (k == "const") {
        n.has_enum = true;
        n.enum_values.push_back(val);
      } else if (k == "oneOf" || k == "anyOf" || k == "allOf") {
        auto list = compileList(val, file, ptr, k);
        if (!list) return std::unexpected(list.error());
        (k == "oneOf" ? n.one_of : k == "anyOf" ? n.any_of : n.all_of) = std::move(*list);
      } else if (k == "not") {
        auto c = compileChild(val, file, sub, "");
        if (!c) return std::unexpected(c.error());
        n.not_ = *c;
      } else {
        out_.warnings_.push_back(fmt::format("{}: unknown keyword \"{}\" ignored", n.where, k));
      }
    }
    n.prop_required.assign(n.props.size(), 0);
    std::size_t found = 0;
    for (const auto& r : n.required) {
      for (std::size_t i = 0; i < n.props.size(); ++i)
        if (n.props[i].first == r && !n.prop_required[i]) {
          n.prop_required[i] = 1;
          ++found;
        }
    }
    n.required_in_props = found == n.required.size();
    return n;
  }

  int resolve(int n) const {
    for (int hops = 0; out_.nodes_[n].ref >= 0 && hops < 64; ++hops) n = out_.nodes_[n].ref;
    return n;
  }

  std::optional<Disc> disc(int n, std::vector<int>& visiting) {
    n = resolve(n);
    if (std::find(visiting.begin(), visiting.end(), n) != visiting.end()) return std::nullopt;
    const Node& node = out_.nodes_[n];
    if (!node.props.empty() || node.additional_false) {
      auto it = std::lower_bound(
          node.props.begin(), node.props.end(), std::string_view("type"),
          [](const auto& p, std::string_view k) { return shortLexLess(p.first, k); });
      bool requires_type =
          std::find(node.required.begin(), node.required.end(), "type") != node.required.end();
      if (it != node.props.end() && it->first == "type") {
        const Node& t = out_.nodes_[resolve(it->second)];
        if (!t.has_enum) return std::nullopt;
        Disc d;
        d.requires_type = requires_type;
        for (const auto& e : t.enum_values) {
          if (!e.is_string()) return std::nullopt;
          d.values.emplace_back(e.as_string());
        }
        return d;
      }
      if (node.additional_false && node.additional < 0) return Disc{{}, requires_type};
      return std::nullopt;
    }
    const std::vector<int>& alts = !node.one_of.empty() ? node.one_of : node.any_of;
    if (alts.empty()) return std::nullopt;
    visiting.push_back(n);
    Disc out;
    out.requires_type = true;
    for (int b : alts) {
      auto d = disc(b, visiting);
      if (!d) {
        visiting.pop_back();
        return std::nullopt;
      }
      out.requires_type = out.requires_type && d->requires_type;
      for (auto& v : d->values)
        if (std::find(out.values.begin(), out.values.end(), v) == out.values.end())
          out.values.push_back(v);
    }
    visiting.pop_back();
    return out;
  }

  Dispatch makeDispatch(const std::vector<int>& branches) {
    Dispatch d;
    std::vector<std::optional<Disc>> discs;
    bool any = false;
    for (int b : branches) {
      std::vector<int> visiting;
      discs.push_back(disc(b, visiting));
      any = any || (discs.back() && !discs.back()->values.empty());
    }
    if (!any) return d;
    d.enabled = true;
    std::set<std::string> values;
    for (const auto& x : discs)
      if (x) values.insert(x->values.begin(), x->values.end());
    std::vector<std::string> ordered(values.begin(), values.end());
    std::sort(ordered.begin(), ordered.end(), shortLexLess);
    for (const auto& v : ordered) {
      d.by_value.emplace_back(v, std::vector<int>{});
      auto& list = d.by_value.back().second;
      for (std::size_t i = 0; i < discs.size(); ++i)
        if (!discs[i] || std::find(discs[i]->values.begin(), discs[i]->values.end(), v) !=
                             discs[i]->values.end())
          list.push_back(static_cast<int>(i));
    }
    for (std::size_t i = 0; i < discs.size(); ++i) {
      if (!discs[i] || !discs[i]->requires_type) d.when_absent.push_back(static_cast<int>(i));
      if (!discs[i]) d.when_other.push_back(static_cast<int>(i));
    }
    d.known_values.assign(values.begin(), values.end());
    return d;
  }

  const SchemaReader& read_;
  CompiledSchema& out_;
  std::map<std::string, int> memo_;
  std::map<std::string, std::unique_ptr<bj::value>> docs_;
};

Result<std::shared_ptr<const CompiledSchema>> CompiledSchema::load(const std::filesystem::path& dir,
                                                                   const std::string& root_file,
                                                                   Dispatching dispatching) {
  SchemaReader read = [&dir](const std::string& file) -> Result<std::string> {
    std::filesystem::path p = dir / file;
    std::ifstream in(p, std::ios::binary);
    if (!in) return invalid(fmt::format("schema file {} cannot be read", p.string()));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return load(read, root_file, dispatching);
}

Result<std::shared_ptr<const CompiledSchema>> CompiledSchema::load(const SchemaReader& read,
                                                                   const std::string& root_file,
                                                                   Dispatching dispatching) {
  auto out = std::make_shared<CompiledSchema>();
  SchemaCompiler c(read, *out);
  auto root = c.compileRef(root_file, "");
  if (!root) return std::unexpected(root.error());
  out->root_ = *root;
  if (dispatching == Dispatching::kOn) c.buildDispatch();
  return std::shared_ptr<const CompiledSchema>(std::move(out));
}

std::size_t CompiledSchema::dispatchCountForTest() const {
  std::size_t n = 0;
  for (const auto& x : nodes_) n += x.one_of_dispatch.enabled + x.any_of_dispatch.enabled;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Validation

namespace {

std::uint8_t kindBits(const bj::value& v) {
  switch (v.kind()) {
    case bj::kind::null:
      return 1;
    case bj::kind::bool_:
      return 2;
    case bj::kind::int64:
    case bj::kind::uint64:
      return 4 | 8;
    case bj::kind::double_: {
      double d = v.get_double();
      return std::isfinite(d) && std::floor(d) == d ? (4 | 8) : 8;
    }
    case bj::kind::string:
      return 16;
    case bj::kind::array:
      return 32;
    case bj::kind::object:
      return 64;
  }
  return 0;
}

std::string typeNames(std::uint8_t bits) {
  std::vector<std::string> names;
  if (bits & 64) names.push_back("an object");
  if (bits & 32) names.push_back("an array");
  if (bits & 16) names.push_back("a string");
  if (bits & 8)
    names.push_back("a number");
  else if (bits & 4)
    names.push_back("an integer");
  if (bits & 2) names.push_back("true or false");
  if (bits & 1) names.push_back("null");
  if (names.empty()) return "nothing (no value is allowed here)";
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

// Integral values are "an integer": JSON Schema's integer type is checked apart from number.
const char* kindName(const bj::value& v) {
  return detail::kindName(v, detail::IntegerName::kInteger);
}

std::string shortJson(const bj::value& v) { return truncateUtf8(bj::serialize(v), 57); }

double asDouble(const bj::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  return v.get_double();
}

std::string fmtNum(double d) {
  if (std::floor(d) == d && std::fabs(d) < 1e15)
    return fmt::format("{}", static_cast<long long>(d));
  return fmt::format("{}", d);
}

bool jsonEqual(const bj::value& a, const bj::value& b) {
  bool an = a.is_number(), bn = b.is_number();
  if (an && bn) return asDouble(a) == asDouble(b);
  return a == b;
}

std::string inName(const std::string& name) {
  return name.empty() ? std::string() : fmt::format(" (in {})", name);
}

}  // namespace

int CompiledSchema::resolve(int n) const {
  for (int hops = 0; nodes_[n].ref >= 0 && hops < 64; ++hops) n = nodes_[n].ref;
  return n;
}

std::string CompiledSchema::branchName(int n) const {
  n = resolve(n);
  const Node& node = nodes_[n];
  if (!node.name.empty()) return node.name;
  return node.where;
}

bool CompiledSchema::validate(const bj::value& v, detail::ErrorSink* sink) const {
  return check(root_, v, sink);
}

bool CompiledSchema::check(int n, const bj::value& v, detail::ErrorSink* sink) const {
  n = resolve(n);
  const Node& node = nodes_[n];
  if (node.has_type) {
    std::uint8_t bits = kindBits(v);
    if (!(node.types & bits)) {
      if (sink)
        sink->add(
            fmt::format("must be {}, got {} {}", typeNames(node.types), kindName(v), shortJson(v)));
      return false;
    }
  }
  bool ok = true;
  if (node.has_enum) {
    bool found = false;
    if (v.is_string()) {
      std::string_view s = v.get_string();
      for (const auto& e : node.enum_values)
        if (e.is_string() && bytesEqual(e.get_string(), s)) {
          found = true;
          break;
        }
    } else {
      for (const auto& e : node.enum_values)
        if (jsonEqual(e, v)) {
          found = true;
          break;
        }
    }
    if (!found) {
      if (!sink) return false;
      std::string allowed;
      for (std::size_t i = 0; i < node.enum_values.size(); ++i) {
        if (i) allowed += ", ";
        allowed += bj::serialize(node.enum_values[i]);
      }
      sink->add(node.enum_values.size() == 1
                    ? fmt::format("must be {}, got {}", allowed, shortJson(v))
                    : fmt::format("must be one of {}; got {}", allowed, shortJson(v)));
      ok = false;
    }
  }
  switch (v.kind()) {
    case bj::kind::string: {
      std::string_view s = v.get_string();
      if (node.max_length >= 0 && s.size() > static_cast<std::size_t>(node.max_length)) {
        std::size_t cp = codePointCount(s);
        if (cp > static_cast<std::size_t>(node.max_length)) {
          if (!sink) return false;
          sink->add(
              fmt::format("is too long: {} characters, at most {} allowed", cp, node.max_length));
          ok = false;
        }
      }
      if (node.min_length > 0) {
        std::size_t cp = codePointCount(s);
        if (cp < static_cast<std::size_t>(node.min_length)) {
          if (!sink) return false;
          sink->add(fmt::format("is too short: {} characters, at least {} required", cp,
                                node.min_length));
          ok = false;
        }
      }
      if (node.format == Format::kUri && !isAbsoluteUri(s)) {
        if (!sink) return false;
        sink->add(
            fmt::format("\"{}\" is not an absolute URI; write it with a scheme, e.g. "
                        "https://example.com/page",
                        truncateUtf8(s, 77)));
        ok = false;
      }
      break;
    }
    case bj::kind::int64:
    case bj::kind::uint64:
    case bj::kind::double_: {
      double d = asDouble(v);
      auto fail = [&](std::string msg) {
        if (sink) sink->add(std::move(msg));
        ok = false;
      };
      if (node.minimum && d < *node.minimum)
        fail(fmt::format("must be at least {}, got {}", fmtNum(*node.minimum), fmtNum(d)));
      if (node.maximum && d > *node.maximum)
        fail(fmt::format("must be at most {}, got {}", fmtNum(*node.maximum), fmtNum(d)));
      if (node.exclusive_minimum && d <= *node.exclusive_minimum)
        fail(fmt::format("must be greater than {}, got {}", fmtNum(*node.exclusive_minimum),
                         fmtNum(d)));
      if (node.exclusive_maximum && d >= *node.exclusive_maximum)
        fail(fmt::format("must be less than {}, got {}", fmtNum(*node.exclusive_maximum),
                         fmtNum(d)));
      if (!ok && !sink) return false;
      break;
    }
    case bj::kind::object:
      if (!checkObject(node, v.get_object(), sink)) {
        if (!sink) return false;
        ok = false;
      }
      break;
    case bj::kind::array:
      if (!checkArray(node, v.get_array(), sink)) {
        if (!sink) return false;
        ok = false;
      }
      break;
    default:
      break;
  }
  for (int b : node.all_of) {
    if (!check(b, v, sink)) {
      if (!sink) return false;
      ok = false;
    }
  }
  if (!node.any_of.empty() &&
      !checkAlternatives(node, node.any_of, node.any_of_dispatch, false, v, sink)) {
    if (!sink) return false;
    ok = false;
  }
  if (!node.one_of.empty() &&
      !checkAlternatives(node, node.one_of, node.one_of_dispatch, true, v, sink)) {
    if (!sink) return false;
    ok = false;
  }
  if (node.not_ >= 0 && check(node.not_, v, nullptr)) {
    if (!sink) return false;
    sink->add(fmt::format("must not match {}", branchName(node.not_)));
    ok = false;
  }
  return ok;
}

bool CompiledSchema::checkObject(const Node& node, const bj::object& o,
                                 detail::ErrorSink* sink) const {
  bool ok = true;
  bool counted = node.required_in_props && !sink;
  if (!counted) {
    for (const auto& r : node.required) {
      if (o.find(r) == o.end()) {
        if (!sink) return false;
        sink->add(fmt::format("missing required property \"{}\"{}", r, inName(node.name)));
        ok = false;
      }
    }
  }
  std::size_t required_seen = 0;
  if (!node.props.empty() || node.additional_false || node.additional >= 0) {
    for (const auto& kv : o) {
      std::string_view key = kv.key();
      auto it = std::lower_bound(node.props.begin(), node.props.end(), key,
                                 [](const std::pair<std::string, int>& p, std::string_view k) {
                                   return shortLexLess(p.first, k);
                                 });
      int child = -1;
      if (it != node.props.end() && bytesEqual(it->first, key)) {
        child = it->second;
        required_seen += node.prop_required[it - node.props.begin()];
      }
      if (child < 0 && node.additional >= 0) child = node.additional;
      if (child >= 0) {
        if (sink) sink->push(key);
        bool r = check(child, kv.value(), sink);
        if (sink) sink->pop();
        if (!r) {
          if (!sink) return false;
          ok = false;
        }
      } else if (node.additional_false) {
        if (!sink) return false;
        std::string allowed;
        if (node.props.size() <= 16) {
          for (std::size_t i = 0; i < node.props.size(); ++i)
            allowed += (i ? ", " : "") + node.props[i].first;
          allowed = fmt::format("; allowed properties: {}", allowed);
        }
        sink->add(
            fmt::format("property \"{}\" is not allowed here{}{}", key, inName(node.name), allowed),
            key);
        ok = false;
      }
      if (sink && sink->full()) return false;
    }
  }
  if (counted && required_seen < node.required.size()) return false;
  if (node.min_props >= 0 && o.size() < static_cast<std::size_t>(node.min_props)) {
    if (!sink) return false;
    sink->add(fmt::format("has {} properties; at least {} required", o.size(), node.min_props));
    ok = false;
  }
  if (node.max_props >= 0 && o.size() > static_cast<std::size_t>(node.max_props)) {
    if (!sink) return false;
    sink->add(fmt::format("has {} properties; at most {} allowed", o.size(), node.max_props));
    ok = false;
  }
  return ok;
}

bool CompiledSchema::checkArray(const Node& node, const bj::array& a,
                                detail::ErrorSink* sink) const {
  bool ok = true;
  if (node.min_items >= 0 && a.size() < static_cast<std::size_t>(node.min_items)) {
    if (!sink) return false;
    sink->add(fmt::format("has {} item{}; at least {} required", a.size(), a.size() == 1 ? "" : "s",
                          node.min_items));
    ok = false;
  }
  if (node.max_items >= 0 && a.size() > static_cast<std::size_t>(node.max_items)) {
    if (!sink) return false;
    sink->add(fmt::format("has {} items; at most {} allowed", a.size(), node.max_items));
    ok = false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    int child = -1;
    bool forbidden = false;
    if (node.has_tuple) {
      if (i < node.tuple.size())
        child = node.tuple[i];
      else if (node.additional_items >= 0)
        child = node.additional_items;
      else
        forbidden = node.additional_items_false;
    } else {
      child = node.items;
    }
    if (forbidden) {
      if (!sink) return false;
      sink->add(fmt::format("has {} items; at most {} allowed", a.size(), node.tuple.size()));
      ok = false;
      break;
    }
    if (child < 0) continue;
    if (sink) sink->push(i);
    bool r = check(child, a[i], sink);
    if (sink) sink->pop();
    if (!r) {
      if (!sink) return false;
      ok = false;
      if (sink->full()) return false;
    }
  }
  if (node.unique_items) {
    for (std::size_t i = 0; i < a.size(); ++i)
      for (std::size_t j = i + 1; j < a.size(); ++j)
        if (jsonEqual(a[i], a[j])) {
          if (!sink) return false;
          sink->add(fmt::format("items {} and {} are equal; items must be unique", i, j));
          return false;
        }
  }
  return ok;
}

const std::vector<int>* CompiledSchema::candidates(const std::vector<int>& branches,
                                                   const Dispatch& d, const bj::value& v,
                                                   std::vector<int>& scratch) const {
  if (d.enabled && v.is_object()) {
    const bj::object& o = v.get_object();
    auto it = o.find("type");
    if (it == o.end()) return &d.when_absent;
    if (!it->value().is_string()) return &d.when_other;
    std::string_view t = it->value().get_string();
    auto found = std::lower_bound(
        d.by_value.begin(), d.by_value.end(), t,
        [](const auto& p, std::string_view k) { return shortLexLess(p.first, k); });
    return found == d.by_value.end() || !bytesEqual(found->first, t) ? &d.when_other
                                                                     : &found->second;
  }
  scratch.resize(branches.size());
  for (std::size_t i = 0; i < branches.size(); ++i) scratch[i] = static_cast<int>(i);
  return &scratch;
}

bool CompiledSchema::checkAlternatives(const Node& node, const std::vector<int>& branches,
                                       const Dispatch& d, bool exactly_one, const bj::value& v,
                                       detail::ErrorSink* sink) const {
  (void)node;
  std::vector<int> scratch;
  const std::vector<int>& cands = *candidates(branches, d, v, scratch);
  int matched = 0, first = -1, second = -1;
  for (int pos : cands) {
    if (check(branches[pos], v, nullptr)) {
      ++matched;
      if (first < 0)
        first = pos;
      else if (second < 0)
        second = pos;
      if (!exactly_one || matched > 1) break;
    }
  }
  bool ok = exactly_one ? matched == 1 : matched >= 1;
  if (ok || !sink) return ok;

  if (matched > 1) {
    sink->add(
        fmt::format("is ambiguous: it matches both {} and {}; add a \"type\" property or "
                    "remove the properties that make it fit both",
                    branchName(branches[first]), branchName(branches[second])));
    return false;
  }
  std::string expected;
  for (std::size_t i = 0; i < d.known_values.size(); ++i)
    expected += (i ? ", " : "") + d.known_values[i];
  if (cands.empty()) {
    const bj::object& o = v.get_object();
    auto it = o.find("type");
    if (it == o.end())
      sink->add(fmt::format("missing property \"type\"; expected one of: {}", expected));
    else if (it->value().is_string())
      sink->add(fmt::format("unknown type \"{}\" here; expected one of: {}",
                            std::string_view(it->value().get_string()), expected),
                "type");
    else
      sink->add(fmt::format("\"type\" must be a string, one of: {}", expected), "type");
    return false;
  }
  if (cands.size() == 1) {
    check(branches[cands[0]], v, sink);
    return false;
  }
  // Several candidates and none matched: report the closest one (fewest errors).
  std::vector<ValidationError> best;
  std::size_t best_count = std::numeric_limits<std::size_t>::max();
  int best_pos = -1;
  std::string names;
  for (std::size_t i = 0; i < cands.size(); ++i) {
    names += (i ? ", " : "") + branchName(branches[cands[i]]);
    detail::ErrorSink tmp = sink->fork(16);
    check(branches[cands[i]], v, &tmp);
    std::size_t count = tmp.size();
    // A branch that fails only on its type is a poor hint.
    if (count < best_count) {
      best_count = count;
      best = std::move(tmp.errors());
      best_pos = cands[i];
    }
  }
  if (!v.is_object() && !v.is_array()) {
    sink->add(fmt::format("does not match any allowed form ({}); got {} {}", names, kindName(v),
                          shortJson(v)));
    return false;
  }
  sink->add(fmt::format("does not match any of: {}; closest is {}", names,
                        branchName(branches[best_pos])));
  for (auto& e : best) sink->addAt(std::move(e.path), std::move(e.message));
  return false;
}

}  // namespace parley::connector::richcontent
