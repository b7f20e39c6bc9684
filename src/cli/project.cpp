#include "cli/project.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json.h"
#include "functions/validation.h"

namespace parley::cli {

namespace fs = std::filesystem;
namespace bj = boost::json;

namespace {

Result<std::string> readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return notFound(fmt::format("{} does not exist", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status writeFile(const fs::path& p, const std::string& text) {
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot create {}: {}", p.parent_path().string(), ec.message()));
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) return makeError(ErrorCode::kUnavailable, fmt::format("cannot write {}", p.string()));
  out << text;
  out.close();
  if (!out) return makeError(ErrorCode::kUnavailable, fmt::format("cannot write {}", p.string()));
  return {};
}

// Pretty JSON with two-space indentation (files people edit by hand).
void pretty(std::string& out, const bj::value& v, int indent) {
  auto pad = [&](int n) { out.append(static_cast<std::size_t>(n) * 2, ' '); };
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    std::size_t i = 0;
    for (const auto& [k, x] : o) {
      pad(indent + 1);
      out += bj::serialize(bj::string(k));
      out += ": ";
      pretty(out, x, indent + 1);
      out += ++i < o.size() ? ",\n" : "\n";
    }
    pad(indent);
    out += "}";
  } else if (v.is_array()) {
    const auto& a = v.as_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += "[\n";
    for (std::size_t i = 0; i < a.size(); ++i) {
      pad(indent + 1);
      pretty(out, a[i], indent + 1);
      out += i + 1 < a.size() ? ",\n" : "\n";
    }
    pad(indent);
    out += "]";
  } else {
    out += bj::serialize(v);
  }
}

Result<std::vector<store::EnvVar>> readPairs(const bj::object& o, std::string_view field,
                                             std::string_view file) {
  std::vector<store::EnvVar> out;
  const bj::value* v = o.if_contains(field);
  if (!v || v->is_null()) return out;
  if (!v->is_array())
    return invalid(fmt::format("{}: '{}' must be an array of {{key, value}}", file, field));
  for (const auto& item : v->as_array()) {
    if (!item.is_object())
      return invalid(fmt::format("{}: '{}' must be an array of {{key, value}}", file, field));
    const auto& io = item.as_object();
    const bj::value* value = io.if_contains("value");
    std::string text;
    if (value && value->is_string())
      text = std::string(value->as_string());
    else if (value && !value->is_null())
      text = json::dump(*value);  // lpf allows JSON secrets; keep them as text
    out.push_back({json::getString(io, "key"), text});
  }
  return out;
}

}  // namespace

std::string prettyJson(const bj::value& v) {
  std::string out;
  pretty(out, v, 0);
  out += "\n";
  return out;
}

std::string configToJson(const FunctionConfig& c) {
  bj::object o;
  o["name"] = c.name;
  o["event"] = c.event;
  o["description"] = c.description;
  bj::object input;
  auto headers = json::parse(c.input_headers_json);
  input["headers"] = headers ? *headers : bj::value(bj::array{});
  auto payload = json::parse(c.input_payload_json);
  input["payload"] = payload ? *payload : bj::value(bj::object{});
  o["input"] = std::move(input);
  bj::array env;
  for (const auto& e : c.env) env.push_back(bj::object{{"key", e.key}, {"value", e.value}});
  o["environmentVariables"] = std::move(env);
  return prettyJson(o);
}

Result<FunctionConfig> configFromJson(const std::string& text) {
  auto o = json::parseObject(text);
  if (!o) return invalid(fmt::format("config.json: {}", o.error().message));
  FunctionConfig c;
  c.name = json::getString(*o, "name");
  c.event = json::getString(*o, "event", "no_event");
  if (c.event.empty()) c.event = "no_event";
  c.description = json::getString(*o, "description");
  if (const bj::value* in = o->if_contains("input"); in && in->is_object()) {
    const auto& io = in->as_object();
    if (const bj::value* h = io.if_contains("headers"); h && !h->is_null()) {
      if (!h->is_array()) return invalid("config.json: input.headers must be an array");
      c.input_headers_json = json::dump(*h);
    }
    if (const bj::value* p = io.if_contains("payload"); p) c.input_payload_json = json::dump(*p);
  }
  auto env = readPairs(*o, "environmentVariables", "config.json");
  if (!env) return std::unexpected(env.error());
  c.env = std::move(*env);
  return c;
}

Project::Project(std::string root) : root_(std::move(root)) {}

std::string Project::functionDir(const std::string& name) const {
  return (fs::path(root_) / "functions" / name).string();
}

bool Project::hasFunction(const std::string& name) const {
  return fs::exists(fs::path(functionDir(name)) / "index.js");
}

Status Project::initFunction(const FunctionConfig& config, const std::string& code) {
  if (auto s = functions::validateFunctionName(config.name); !s) return s;
  if (fs::exists(functionDir(config.name)))
    return conflict(
        fmt::format("{} already exists; pick another name or edit it", functionDir(config.name)));
  if (auto s = writeCode(config.name, code); !s) return s;
  if (auto s = writeConfig(config); !s) return s;
  if (!fs::exists(fs::path(root_) / "functions" / "settings.json"))
    if (auto s = writeSettings({}); !s) return s;
  return {};
}

Result<std::string> Project::readCode(const std::string& name) const {
  auto text = readFile(fs::path(functionDir(name)) / "index.js");
  if (!text)
    return notFound(
        fmt::format("{}/index.js does not exist: run 'parley function init {}' or "
                    "'parley function pull {}' first",
                    functionDir(name), name, name));
  return text;
}

Result<FunctionConfig> Project::readConfig(const std::string& name) const {
  auto text = readFile(fs::path(functionDir(name)) / "config.json");
  if (!text)
    return notFound(
        fmt::format("{}/config.json does not exist: run 'parley function init {}' "
                    "or 'parley function pull {}' first",
                    functionDir(name), name, name));
  auto c = configFromJson(*text);
  if (!c) return c;
  if (c->name.empty()) c->name = name;
  return c;
}

Status Project::writeCode(const std::string& name, const std::string& code) const {
  return writeFile(fs::path(functionDir(name)) / "index.js", code);
}

Status Project::writeConfig(const FunctionConfig& config) const {
  return writeFile(fs::path(functionDir(config.name)) / "config.json", configToJson(config));
}

Result<ProjectSettings> Project::readSettings() const {
  fs::path p = fs::path(root_) / "functions" / "settings.json";
  ProjectSettings s;
  if (!fs::exists(p)) return s;
  auto text = readFile(p);
  if (!text) return std::unexpected(text.error());
  auto o = json::parseObject(*text);
  if (!o) return invalid(fmt::format("settings.json: {}", o.error().message));
  auto secrets = readPairs(*o, "secrets", "settings.json");
  if (!secrets) return std::unexpected(secrets.error());
  s.secrets = std::move(*secrets);
  if (const bj::value* w = o->if_contains("whitelist"); w && !w->is_null()) {
    if (!w->is_array()) return invalid("settings.json: 'whitelist' must be an array of domains");
    for (const auto& d : w->as_array())
      if (d.is_string()) s.whitelist.emplace_back(d.as_string());
  }
  return s;
}

Status Project::writeSettings(const ProjectSettings& settings) const {
  bj::object o;
  bj::array secrets;
  for (const auto& e : settings.secrets)
    secrets.push_back(bj::object{{"key", e.key}, {"value", e.value}});
  o["secrets"] = std::move(secrets);
  bj::array whitelist;
  for (const auto& d : settings.whitelist) whitelist.push_back(bj::string(d));
  o["whitelist"] = std::move(whitelist);
  return writeFile(fs::path(root_) / "functions" / "settings.json", prettyJson(o));
}

}  // namespace parley::cli
