#include "connector/richcontent/validator.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/url/parse.hpp>
#include <cctype>
#include <fstream>
#include <sstream>

#include "common/json.h"
#include "connector/richcontent/embedded_schema.h"
#include "connector/richcontent/json_kind.h"

namespace parley::connector::richcontent {

namespace bj = boost::json;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string shortText(std::string_view s) { return truncateUtf8(s, 77); }

const char* kindName(const bj::value& v) {
  return detail::kindName(v, detail::IntegerName::kNumber);
}

std::string joinPath(const std::string& prefix, std::string_view child) {
  std::string p = prefix;
  p += '/';
  for (char c : child) {
    if (c == '~')
      p += "~0";
    else if (c == '/')
      p += "~1";
    else
      p += c;
  }
  return p;
}

std::string joinPath(const std::string& prefix, std::size_t index) {
  return prefix + "/" + std::to_string(index);
}

void runSchema(const CompiledSchema& schema, const bj::value& v, const ValidateOptions& opts,
               ValidationResult& r) {
  if (schema.validate(v, nullptr)) return;
  detail::ErrorSink sink(opts.max_errors, opts.path_prefix);
  schema.validate(v, &sink);
  r.valid = false;
  if (sink.errors().empty())
    r.errors.push_back(ValidationError{opts.path_prefix, "does not match the schema"});
  for (auto& e : sink.errors()) r.errors.push_back(std::move(e));
}

// Checks an optional string field's length; `required` makes absence an error.
void checkString(const bj::object& o, std::string_view key, std::size_t max, bool required,
                 const std::string& path, std::string_view what, ValidationResult& r) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) r.fail(path, fmt::format("{} needs a \"{}\" string", what, key));
    return;
  }
  if (!it->value().is_string()) {
    r.fail(joinPath(path, key), fmt::format("must be a string, got {}", kindName(it->value())));
    return;
  }
  std::size_t n = codePointCount(it->value().get_string());
  if (n > max)
    r.fail(joinPath(path, key),
           fmt::format("is too long: {} characters, at most {} allowed", n, max));
}

}  // namespace

namespace {

// Bytes of a JSON string literal as Boost.JSON writes it (quotes and escapes included).
std::size_t stringLiteralSize(std::string_view s) {
  std::size_t n = 2 + s.size();
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
      n += 1;
    else if (c < 0x20)
      n += 5;
  }
  return n;
}

std::size_t digits(std::uint64_t x) {
  std::size_t n = 1;
  while (x >= 10) {
    x /= 10;
    ++n;
  }
  return n;
}

}  // namespace

std::size_t compactJsonSize(const bj::value& v) {
  switch (v.kind()) {
    case bj::kind::null:
      return 4;
    case bj::kind::bool_:
      return v.get_bool() ? 4 : 5;
    case bj::kind::int64: {
      std::int64_t x = v.get_int64();
      return x < 0 ? 1 + digits(static_cast<std::uint64_t>(-(x + 1)) + 1)
                   : digits(static_cast<std::uint64_t>(x));
    }
    case bj::kind::uint64:
      return digits(v.get_uint64());
    case bj::kind::double_:
      return bj::serialize(v).size();
    case bj::kind::string:
      return stringLiteralSize(v.get_string());
    case bj::kind::array: {
      const bj::array& a = v.get_array();
      std::size_t n = 2 + (a.empty() ? 0 : a.size() - 1);
      for (const auto& x : a) n += compactJsonSize(x);
      return n;
    }
    case bj::kind::object: {
      const bj::object& o = v.get_object();
      std::size_t n = 2 + (o.empty() ? 0 : o.size() - 1);
      for (const auto& kv : o) n += stringLiteralSize(kv.key()) + 1 + compactJsonSize(kv.value());
      return n;
    }
  }
  return 0;
}

bool imageUrlAllowed(std::string_view url, const std::optional<std::vector<std::string>>& allowlist,
                     std::string* why) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    if (why)
      *why = fmt::format("\"{}\" is not a valid URL; use an absolute https:// URL", shortText(url));
    return false;
  }
  if (!iequals(parsed->scheme(), "https")) {
    if (why) *why = fmt::format("image URLs must use https://, got \"{}\"", shortText(url));
    return false;
  }
  std::string_view host = parsed->encoded_host();
  if (host.empty()) {
    if (why) *why = fmt::format("\"{}\" has no host", shortText(url));
    return false;
  }
  if (!allowlist) return true;
  for (const auto& raw : *allowlist) {
    std::string_view e = trim(raw);
    if (e.empty() || e.find('*') != std::string_view::npos) continue;
    if (e.size() >= 8 && iequals(e.substr(0, 8), "https://")) {
      if (url.size() < e.size() || !iequals(url.substr(0, e.size()), e)) continue;
      if (e.back() == '/' || url.size() == e.size() ||
          std::string_view("/?#").find(url[e.size()]) != std::string_view::npos)
        return true;
      continue;
    }
    if (iequals(e, host)) return true;
  }
  if (why)
    *why = fmt::format(
        "image host \"{}\" is not on the account's image allowlist; add the host to the "
        "allowlist or serve the image from an allowed host",
        lower(host));
  return false;
}

bool linkUriAllowed(std::string_view uri, LinkTarget target, std::string* why) {
  auto parsed = boost::urls::parse_uri(trim(uri));
  if (!parsed) {
    if (why)
      *why = fmt::format("\"{}\" is not a valid absolute URL; use an https:// URL", shortText(uri));
    return false;
  }
  std::string scheme = lower(parsed->scheme());
  if (target == LinkTarget::kWeb) {
    if (scheme == "https" || scheme == "http") {
      if (!parsed->has_authority() || parsed->encoded_host().empty()) {
        if (why) *why = fmt::format("\"{}\" has no host", shortText(uri));
        return false;
      }
      return true;
    }
    if (scheme == "mailto" || scheme == "tel") return true;
    if (why)
      *why = fmt::format(
          "link URIs must be http(s)://, mailto: or tel: URLs, got a {}: URL; a link to "
          "anything else could run code in the page that shows it",
          scheme);
    return false;
  }
  if (scheme == "javascript" || scheme == "vbscript" || scheme == "data" || scheme == "file" ||
      scheme == "blob") {
    if (why)
      *why = fmt::format("app links must not use {}: URLs; use the app's own scheme or https://",
                         scheme);
    return false;
  }
  return true;
}

bool cssColourAllowed(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  auto isHex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  if (v[0] == '#') {
    std::string_view hex = v.substr(1);
    if (hex.size() != 3 && hex.size() != 4 && hex.size() != 6 && hex.size() != 8) return false;
    return std::all_of(hex.begin(), hex.end(), isHex);
  }
  std::size_t i = 0;
  while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
  if (i == v.size()) return true;  // a keyword
  std::string fn = lower(v.substr(0, i));
  if ((fn != "rgb" && fn != "rgba" && fn != "hsl" && fn != "hsla") || v[i] != '(' ||
      v.back() != ')')
    return false;
  std::string_view args = v.substr(i + 1, v.size() - i - 2);
  for (std::size_t k = 0; k < args.size(); ++k) {
    char c = args[k];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == ' ' || c == ',' || c == '.' ||
        c == '%' || c == '/' || c == '-' || c == '+')
      continue;
    if (args.substr(k, 3) == "deg") {
      k += 2;
      continue;
    }
    return false;
  }
  return true;
}

const std::string_view kQuickRepliesSchema = R"({
  "type": "object",
  "title": "quickReplies",
  "additionalProperties": false,
  "properties": {
    "type": {"type": "string", "enum": ["quickReplies"]},
    "itemsPerRow": {"type": "number"},
    "replies": {"type": "array", "minItems": 1, "maxItems": 24, "items": {"$ref": "button.json"}}
  },
  "required": ["type", "itemsPerRow", "replies"]
})";

std::string_view embeddedJsonPollockVersion() { return PARLEY_JSON_POLLOCK_VERSION; }

namespace {
constexpr const char* kQuickRepliesFile = "quickReplies.json";
}  // namespace

Result<Validator> Validator::compile(const SchemaReader& pollock) {
  auto p = CompiledSchema::load(pollock, "rich_content.json");
  if (!p) return std::unexpected(p.error());
  SchemaReader quick_replies = [&pollock](const std::string& file) -> Result<std::string> {
    if (file == kQuickRepliesFile) return std::string(kQuickRepliesSchema);
    return pollock(file);
  };
  auto q = CompiledSchema::load(quick_replies, kQuickRepliesFile);
  if (!q) return std::unexpected(q.error());
  return Validator(std::move(*p), std::move(*q));
}

Result<Validator> Validator::loadEmbedded() {
  SchemaReader read = [](const std::string& file) -> Result<std::string> {
    const EmbeddedFile* f = findEmbeddedFile(embeddedJsonPollockSchema(), file);
    if (!f)
      return invalid(fmt::format("schema file {} is not in the built-in JSON Pollock {} schema",
                                 file, embeddedJsonPollockVersion()));
    return std::string(f->text);
  };
  return compile(read);
}

Result<Validator> Validator::load(const std::filesystem::path& pollock_dir) {
  std::filesystem::path dir = pollock_dir;
  if (std::filesystem::exists(dir / "json-pollock-1.7.7" / "rich_content.json"))
    dir /= "json-pollock-1.7.7";
  SchemaReader read = [&dir](const std::string& file) -> Result<std::string> {
    std::filesystem::path p = dir / file;
    std::ifstream in(p, std::ios::binary);
    if (!in) return invalid(fmt::format("schema file {} cannot be read", p.string()));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return compile(read);
}

std::vector<std::string> Validator::warnings() const {
  std::vector<std::string> w = pollock_->warnings();
  for (const auto& x : quick_replies_->warnings()) w.push_back("quickReplies: " + x);
  return w;
}

namespace {

// A style key whose value json-pollock writes into CSS as a colour.
bool isColourKey(std::string_view key) {
  return key == "fill" || key.find("color") != std::string_view::npos;
}

}  // namespace

void Validator::checkValues(const bj::value& v, const ValidateOptions& opts,
                            detail::ErrorSink& sink) const {
  if (v.is_object()) {
    const bj::object& o = v.get_object();
    std::string_view type;
    if (auto t = o.find("type"); t != o.end() && t->value().is_string())
      type = t->value().get_string();
    if (type.empty() || type == "image" || type == "linkPreview") {
      if (auto u = o.find("url"); u != o.end() && u->value().is_string()) {
        std::string why;
        if (!imageUrlAllowed(u->value().get_string(), opts.image_allowlist, &why))
          sink.add(std::move(why), "url");
      }
    }
    if (type == "link") {
      std::string why;
      if (auto u = o.find("uri"); u != o.end() && u->value().is_string() &&
                                  !linkUriAllowed(u->value().get_string(), LinkTarget::kWeb, &why))
        sink.add(std::move(why), "uri");
      for (std::string_view app : {"web", "ios", "android"}) {
        auto a = o.find(app);
        if (a == o.end() || !a->value().is_object()) continue;
        auto u = a->value().get_object().find("uri");
        if (u == a->value().get_object().end() || !u->value().is_string()) continue;
        LinkTarget target = app == "web" ? LinkTarget::kWeb : LinkTarget::kApp;
        if (!linkUriAllowed(u->value().get_string(), target, &why)) {
          sink.push(app);
          sink.add(std::move(why), "uri");
          sink.pop();
        }
      }
    }
    if (auto st = o.find("style"); st != o.end() && st->value().is_object()) {
      sink.push("style");
      for (const auto& kv : st->value().get_object()) {
        if (!isColourKey(kv.key()) || !kv.value().is_string()) continue;
        if (!cssColourAllowed(kv.value().get_string()))
          sink.add(fmt::format("\"{}\" is not a CSS colour; use #rrggbb, a colour name or "
                               "rgb(r, g, b)",
                               shortText(kv.value().get_string())),
                   kv.key());
      }
      sink.pop();
    }
    for (const auto& kv : o) {
      if (!kv.value().is_structured()) continue;
      sink.push(kv.key());
      checkValues(kv.value(), opts, sink);
      sink.pop();
    }
  } else if (v.is_array()) {
    const bj::array& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_structured()) continue;
      sink.push(i);
      checkValues(a[i], opts, sink);
      sink.pop();
    }
  }
}

ValidationResult Validator::validate(const bj::value& sc, const ValidateOptions& opts) const {
  ValidationResult r;
  if (!sc.is_object()) {
    r.fail(opts.path_prefix,
           fmt::format("structured content must be a JSON object, got {}", kindName(sc)));
    return r;
  }
  if (opts.extra_rules) {
    std::size_t bytes = compactJsonSize(sc);
    if (bytes > opts.max_bytes)
      r.fail(opts.path_prefix,
             fmt::format("structured content is {} bytes as compact JSON; the limit is {} bytes",
                         bytes, opts.max_bytes));
  }
  runSchema(*pollock_, sc, opts, r);
  if (opts.extra_rules) {
    detail::ErrorSink sink(opts.max_errors, opts.path_prefix);
    checkValues(sc, opts, sink);
    for (auto& e : sink.errors()) r.fail(std::move(e.path), std::move(e.message));
  }
  return r;
}

ValidationResult Validator::validateText(std::string_view json, const ValidateOptions& opts) const {
  boost::system::error_code ec;
  bj::parse_options po;
  po.max_depth = 64;
  bj::value v = bj::parse(json, ec, {}, po);
  if (ec) {
    ValidationResult r;
    r.parse_error = true;
    r.fail(opts.path_prefix, fmt::format("not valid JSON: {}", ec.message()));
    return r;
  }
  return validate(v, opts);
}

ValidationResult Validator::validateQuickReplies(const bj::value& qr,
                                                 const ValidateOptions& opts) const {
  ValidationResult r;
  if (opts.channel == Channel::kChat) {
    r.fail(opts.path_prefix,
           "quick replies are supported only in messaging conversations, not in chat; send the "
           "choices as buttons in structured content or as text");
    return r;
  }
  if (!qr.is_object()) {
    r.fail(opts.path_prefix, fmt::format("quickReplies must be an object, got {}", kindName(qr)));
    return r;
  }
  runSchema(*quick_replies_, qr, opts, r);
  if (!opts.extra_rules) return r;
  {
    detail::ErrorSink sink(opts.max_errors, opts.path_prefix);
    checkValues(qr, opts, sink);
    for (auto& e : sink.errors()) r.fail(std::move(e.path), std::move(e.message));
  }
  const bj::object& o = qr.get_object();
  if (auto it = o.find("itemsPerRow"); it != o.end() && it->value().is_number()) {
    const bj::value& v = it->value();
    auto n = json::exactInt64(v.is_double() ? v.get_double() : v.to_number<double>());
    if (!n || *n < 1 || *n > kMaxItemsPerRow)
      r.fail(joinPath(opts.path_prefix, "itemsPerRow"),
             fmt::format("must be a whole number from 1 to {}, got {}", kMaxItemsPerRow,
                         bj::serialize(v)));
  }
  if (auto it = o.find("replies"); it != o.end() && it->value().is_array()) {
    const bj::array& replies = it->value().get_array();
    std::string base = joinPath(opts.path_prefix, "replies");
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (!replies[i].is_object()) continue;  // reported by the schema
      const bj::object& chip = replies[i].get_object();
      std::string path = joinPath(base, i);
      if (auto t = chip.find("title"); t != chip.end() && t->value().is_string()) {
        std::size_t n = codePointCount(t->value().get_string());
        if (n > kMaxChipTitle)
          r.fail(joinPath(path, "title"),
                 fmt::format("quick-reply chip title is {} characters; at most {} are shown", n,
                             kMaxChipTitle));
      }
      auto click = chip.find("click");
      bool has_actions = click != chip.end() && click->value().is_object() &&
                         click->value().get_object().contains("actions");
      if (!has_actions)
        r.fail(path,
               "a quick-reply chip needs click.actions, e.g. "
               "{\"actions\":[{\"type\":\"publishText\",\"text\":\"Yes\"}]}");
    }
  }
  return r;
}

ValidationResult Validator::validateMetadata(const bj::value& md,
                                             const ValidateOptions& opts) const {
  ValidationResult r;
  std::vector<std::pair<const bj::value*, std::string>> items;
  if (md.is_array()) {
    const bj::array& a = md.get_array();
    for (std::size_t i = 0; i < a.size(); ++i)
      items.emplace_back(&a[i], joinPath(opts.path_prefix, i));
  } else {
    items.emplace_back(&md, opts.path_prefix);
  }
  for (const auto& [item, path] : items) {
    if (r.errors.size() >= opts.max_errors) break;
    if (!item->is_object()) {
      r.fail(path, fmt::format("a metadata entry must be an object with a \"type\", got {}",
                               kindName(*item)));
      continue;
    }
    const bj::object& o = item->get_object();
    auto t = o.find("type");
    if (t == o.end() || !t->value().is_string() || t->value().get_string().empty()) {
      r.fail(path, "a metadata entry needs a \"type\" string, e.g. \"ExternalId\"");
      continue;
    }
    std::string_view type = t->value().get_string();
    if (type == "ExternalId") {
      checkString(o, "id", 64, true, path, "ExternalId", r);
    } else if (type == "ActionReason") {
      checkString(o, "reason", 64, true, path, "ActionReason", r);
      checkString(o, "reasonId", 64, false, path, "ActionReason", r);
    } else if (type == "BotResponse") {
      checkString(o, "externalConversationId", 64, false, path, "BotResponse", r);
      if (auto bc = o.find("businessCases"); bc != o.end() && !bc->value().is_null()) {
        std::string bpath = joinPath(path, "businessCases");
        if (!bc->value().is_array()) {
          r.fail(bpath, "must be an array of strings");
        } else {
          const bj::array& a = bc->value().get_array();
          for (std::size_t i = 0; i < a.size(); ++i) {
            if (!a[i].is_string())
              r.fail(joinPath(bpath, i), "must be a string");
            else if (codePointCount(a[i].get_string()) > 256)
              r.fail(joinPath(bpath, i), "is too long: at most 256 characters allowed");
          }
        }
      }
      if (auto in = o.find("intents"); in != o.end() && !in->value().is_null()) {
        std::string ipath = joinPath(path, "intents");
        if (!in->value().is_array()) {
          r.fail(ipath, "must be an array of {id, name?, confidenceScore}");
        } else {
          const bj::array& a = in->value().get_array();
          for (std::size_t i = 0; i < a.size(); ++i) {
            std::string p = joinPath(ipath, i);
            if (!a[i].is_object()) {
              r.fail(p, "an intent must be an object {id, name?, confidenceScore}");
              continue;
            }
            const bj::object& intent = a[i].get_object();
            checkString(intent, "id", 256, true, p, "an intent", r);
            checkString(intent, "name", 256, false, p, "an intent", r);
            checkString(intent, "confidence", 64, false, p, "an intent", r);
            auto cs = intent.find("confidenceScore");
            if (cs == intent.end() || cs->value().is_null())
              r.fail(p, "an intent needs a \"confidenceScore\" number from 0 to 1");
            else if (!cs->value().is_number())
              r.fail(joinPath(p, "confidenceScore"), "must be a number from 0 to 1");
            else if (double d = cs->value().to_number<double>(); d < 0 || d > 1)
              r.fail(joinPath(p, "confidenceScore"),
                     fmt::format("must be from 0 to 1, got {}", bj::serialize(cs->value())));
          }
        }
      }
    }
  }
  return r;
}

ValidationResult Validator::validateEncodedMetadata(std::string_view b64,
                                                    const ValidateOptions& opts) const {
  ValidationResult r;
  if (opts.channel == Channel::kChat) {
    r.fail(opts.path_prefix, "encodedMetadata is supported only in messaging conversations");
    return r;
  }
  if (b64.empty()) {
    r.fail(opts.path_prefix, "encodedMetadata is empty; omit it or give a base64 string");
    return r;
  }
  if (b64.size() > kMaxEncodedMetadataBytes) {
    r.fail(opts.path_prefix, fmt::format("encodedMetadata is {} bytes; at most {} allowed",
                                         b64.size(), kMaxEncodedMetadataBytes));
    return r;
  }
  std::size_t pad = 0;
  for (std::size_t i = 0; i < b64.size(); ++i) {
    char c = b64[i];
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
    if (c == '=') {
      ++pad;
      ok = pad <= 2;
    } else if (pad > 0) {
      ok = false;
    }
    if (!ok) {
      r.fail(opts.path_prefix,
             fmt::format("encodedMetadata is not valid base64 (bad character at offset {})", i));
      return r;
    }
  }
  if (pad > 0 && b64.size() % 4 != 0)
    r.fail(opts.path_prefix, "encodedMetadata is not valid base64 (wrong padding)");
  return r;
}

}  // namespace parley::connector::richcontent
