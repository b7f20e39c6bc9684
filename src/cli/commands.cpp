#include "cli/commands.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <ostream>

#include "cli/config.h"
#include "cli/http_client.h"
#include "cli/local_invoke.h"
#include "cli/project.h"
#include "cli/rest_session.h"
#include "common/json.h"
#include "functions/templates.h"

namespace parley::cli {

namespace bj = boost::json;
namespace fs = std::filesystem;

namespace {

// A logged-in REST session with the functions API's paths.
struct Remote : RestSession {
  std::string base() const { return accountPath() + "/functions"; }

  // The function object with this name (from the list), or NotFound.
  Result<bj::object> findByName(const std::string& name) {
    auto list = call("GET", base());
    if (!list) return std::unexpected(list.error());
    if (list->is_array())
      for (const auto& f : list->as_array())
        if (f.is_object() && json::getString(f.as_object(), "name") == name) return f.as_object();
    return notFound(
        fmt::format("there is no function '{}' on {} (account {}); run 'parley "
                    "function push {}' first",
                    name, config.server, config.account, name));
  }
};

Result<Remote> connect(const FunctionCommand& cmd) {
  auto s = openSession(cmd.config);
  if (!s) return std::unexpected(s.error());
  return Remote{std::move(*s)};
}

int fail(std::ostream& err, const Error& e) {
  err << "Error: " << e.message << "\n";
  return 1;
}

// lpf-style output: {result, logs} on success, {errorCode, errorMsg, errorLogs} on failure.
int printInvocation(std::ostream& out, bool ok, const bj::value& result, const bj::array& logs,
                    const std::string& error_code, const std::string& error_message) {
  bj::object o;
  if (ok) {
    o["result"] = result;
    o["logs"] = logs;
  } else {
    o["errorCode"] = error_code;
    o["errorMsg"] = error_message;
    o["errorLogs"] = logs;
  }
  out << prettyJson(o);
  return ok ? 0 : 1;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string formatTime(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms % 1000);
}

// ---- verbs ------------------------------------------------------------------------------------

int doInit(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  if (!functions::isKnownEvent(cmd.event))
    return fail(
        err, Error{ErrorCode::kInvalid, fmt::format("unknown event '{}'; use e.g. "
                                                    "bot_connectors_custom_integration or no_event",
                                                    cmd.event)});
  functions::Template t = functions::templateFor(cmd.event);
  FunctionConfig config;
  config.name = cmd.name;
  config.event = cmd.event;
  config.description = cmd.description;
  if (auto sample = json::parseObject(t.sample_payload)) {
    if (const auto* h = sample->if_contains("headers")) config.input_headers_json = json::dump(*h);
    if (const auto* p = sample->if_contains("payload")) config.input_payload_json = json::dump(*p);
  }
  Project project(cmd.dir);
  if (auto s = project.initFunction(config, t.code); !s) return fail(err, s.error());
  out << fmt::format("Created {} from the '{}' template of event {}.\n",
                     project.functionDir(cmd.name), t.name, cmd.event);
  out << fmt::format("Edit index.js, then 'parley function invoke {} --local' or 'push {}'.\n",
                     cmd.name, cmd.name);
  return 0;
}

int doPush(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  Project project(cmd.dir);
  auto code = project.readCode(cmd.name);
  if (!code) return fail(err, code.error());
  auto config = project.readConfig(cmd.name);
  if (!config) return fail(err, config.error());
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  bj::array env;
  for (const auto& e : config->env) env.push_back(bj::object{{"key", e.key}, {"value", e.value}});
  auto existing = remote->findByName(cmd.name);
  Result<bj::value> r;
  if (existing) {
    std::string uuid = json::getString(*existing, "uuid");
    bj::object body{
        {"code", *code}, {"description", config->description}, {"environmentVariables", env}};
    r = remote->call("PUT", remote->base() + "/" + uuid, json::dump(body));
  } else if (existing.error().code == ErrorCode::kNotFound) {
    bj::object body{{"name", cmd.name},
                    {"description", config->description},
                    {"event", config->event},
                    {"code", *code},
                    {"environmentVariables", env}};
    r = remote->call("POST", remote->base(), json::dump(body));
  } else {
    return fail(err, existing.error());
  }
  if (!r) return fail(err, r.error());
  const auto& f = r->as_object();
  out << fmt::format("Pushed {}: uuid {}, version {}, state {}.\n", cmd.name,
                     json::getString(f, "uuid"), json::getInt(f, "version"),
                     json::getString(f, "state"));
  return 0;
}

int doPull(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto found = remote->findByName(cmd.name);
  if (!found) return fail(err, found.error());
  auto f = remote->call("GET", remote->base() + "/" + json::getString(*found, "uuid"));
  if (!f || !f->is_object())
    return fail(err, f ? Error{ErrorCode::kInternal, "unexpected response"} : f.error());
  const auto& o = f->as_object();
  Project project(cmd.dir);
  FunctionConfig config;
  if (auto existing = project.readConfig(cmd.name)) config = *existing;  // keep the local input
  config.name = cmd.name;
  config.event = json::getString(o, "event", "no_event");
  config.description = json::getString(o, "description");
  config.env.clear();
  if (const auto* ev = o.if_contains("environmentVariables"); ev && ev->is_array())
    for (const auto& e : ev->as_array())
      if (e.is_object())
        config.env.push_back(
            {json::getString(e.as_object(), "key"), json::getString(e.as_object(), "value")});
  if (!project.hasFunction(cmd.name)) {
    if (const auto* sp = o.if_contains("samplePayload"); sp && sp->is_object()) {
      if (const auto* h = sp->as_object().if_contains("headers"))
        config.input_headers_json = json::dump(*h);
      if (const auto* p = sp->as_object().if_contains("payload"))
        config.input_payload_json = json::dump(*p);
    }
  }
  if (auto s = project.writeCode(cmd.name, json::getString(o, "code")); !s)
    return fail(err, s.error());
  if (auto s = project.writeConfig(config); !s) return fail(err, s.error());
  if (!fs::exists(fs::path(cmd.dir) / "functions" / "settings.json"))
    (void)project.writeSettings({});
  out << fmt::format("Pulled {} (version {}, state {}) into {}.\n", cmd.name,
                     json::getInt(o, "version"), json::getString(o, "state"),
                     project.functionDir(cmd.name));
  return 0;
}

int doLifecycle(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto found = remote->findByName(cmd.name);
  if (!found) return fail(err, found.error());
  auto r =
      remote->call("POST", remote->base() + "/" + json::getString(*found, "uuid") + "/" + cmd.verb);
  if (!r) return fail(err, r.error());
  const auto& f = r->as_object();
  out << fmt::format("{} {}: state {}, version {}.\n",
                     cmd.verb == "deploy" ? "Deployed" : "Undeployed", cmd.name,
                     json::getString(f, "state"), json::getInt(f, "version"));
  return 0;
}

int doInvoke(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  Project project(cmd.dir);
  auto config = project.readConfig(cmd.name);
  if (!config) return fail(err, config.error());
  auto headers = json::parse(config->input_headers_json);
  auto payload = json::parse(config->input_payload_json);
  if (!headers || !payload)
    return fail(err, Error{ErrorCode::kInvalid, "config.json: input is not valid JSON"});
  if (cmd.local) {
    auto code = project.readCode(cmd.name);
    if (!code) return fail(err, code.error());
    auto settings = project.readSettings();
    if (!settings) return fail(err, settings.error());
    std::string account = "local";
    if (!cmd.config.empty() || std::getenv("PARLEY_CONFIG") || std::getenv("HOME")) {
      std::string path = cmd.config;
      if (path.empty())
        if (auto p = defaultConfigPath()) path = *p;
      if (auto saved = loadConfig(path)) account = saved->account;
    }
    auto r = invokeLocally(*code, *config, *settings, account);
    if (!r) return fail(err, r.error());
    bj::array logs;
    for (const auto& l : r->logs) logs.push_back(l);
    return printInvocation(out, r->ok, r->result, logs, r->error_code, r->error_message);
  }
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto found = remote->findByName(cmd.name);
  if (!found) return fail(err, found.error());
  bj::object body{{"headers", *headers}, {"payload", *payload}};
  auto r = remote->call("POST", remote->base() + "/" + json::getString(*found, "uuid") + "/invoke",
                        json::dump(body));
  if (!r) return fail(err, r.error());
  const auto& o = r->as_object();
  bj::array logs;
  if (const auto* l = o.if_contains("logs"); l && l->is_array()) logs = l->as_array();
  const auto* e = o.if_contains("error");
  bool ok = !e || e->is_null();
  bj::value result = o.contains("result") ? o.at("result") : bj::value(nullptr);
  std::string code, message;
  if (!ok && e->is_object()) {
    code = json::getString(e->as_object(), "code");
    message = json::getString(e->as_object(), "message");
  }
  return printInvocation(out, ok, result, logs, code, message);
}

int doLogs(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto found = remote->findByName(cmd.name);
  if (!found) return fail(err, found.error());
  std::string target = fmt::format("{}/{}/logs?limit={}", remote->base(),
                                   json::getString(*found, "uuid"), cmd.limit);
  if (cmd.since > 0) target += fmt::format("&since={}", cmd.since);
  if (!cmd.level.empty()) target += "&level=" + cmd.level;
  auto r = remote->call("GET", target);
  if (!r) return fail(err, r.error());
  if (cmd.json) {
    out << prettyJson(*r);
    return 0;
  }
  if (!r->is_array() || r->as_array().empty()) {
    out << "No logs.\n";
    return 0;
  }
  for (const auto& l : r->as_array()) {
    if (!l.is_object()) continue;
    const auto& o = l.as_object();
    std::string extras;
    if (const auto* x = o.if_contains("extras");
        x && !(x->is_array() && x->as_array().empty()) && !x->is_null())
      extras = " " + json::dump(*x);
    out << fmt::format("{} {} [{}] {}{}\n", formatTime(json::getInt(o, "timestamp")),
                       pad(json::getString(o, "level"), 5), json::getString(o, "requestId"),
                       json::getString(o, "message"), extras);
  }
  return 0;
}

int doSchedule(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto found = remote->findByName(cmd.name);
  if (!found) return fail(err, found.error());
  const std::string uuid = json::getString(*found, "uuid");
  const std::string base = "/api/v1/accounts/" + remote->config.account + "/schedules";
  auto printOne = [&](const bj::value& v) {
    if (cmd.json) {
      out << prettyJson(v);
      return;
    }
    const auto& o = v.as_object();
    out << fmt::format("Schedule {} of {}: '{}', {}, next run {}.\n", json::getString(o, "uuid"),
                       cmd.name, json::getString(o, "cronExpression"),
                       json::getInt(o, "nextRunAt") > 0 ? "active" : "paused",
                       formatTime(json::getInt(o, "nextRunAt")));
  };
  if (!cmd.cron.empty()) {
    bj::object body{{"lambdaUUID", uuid}, {"cronExpression", cmd.cron}, {"isActive", !cmd.paused}};
    if (!cmd.payload.empty()) {
      auto payload = json::parse(cmd.payload);
      if (!payload)
        return fail(
            err, Error{ErrorCode::kInvalid, "--payload is not JSON: " + payload.error().message});
      body["payload"] = std::move(*payload);
    }
    auto r = remote->call("POST", base, json::dump(body));
    if (!r || !r->is_object())
      return fail(err, r ? Error{ErrorCode::kInternal, "unexpected response"} : r.error());
    printOne(*r);
    return 0;
  }
  // The schedule must belong to this function (a uuid of another one is refused).
  auto owned = [&](const std::string& id) -> Status {
    auto r = remote->call("GET", base + "/" + id);
    if (!r) return std::unexpected(r.error());
    if (!r->is_object() || json::getString(r->as_object(), "lambdaUUID") != uuid)
      return notFound(fmt::format("schedule {} is not a schedule of {}", id, cmd.name));
    return {};
  };
  if (!cmd.delete_id.empty()) {
    if (auto st = owned(cmd.delete_id); !st) return fail(err, st.error());
    if (auto r = remote->call("DELETE", base + "/" + cmd.delete_id); !r)
      return fail(err, r.error());
    out << fmt::format("Deleted schedule {} of {}.\n", cmd.delete_id, cmd.name);
    return 0;
  }
  if (!cmd.pause_id.empty() || !cmd.resume_id.empty()) {
    const std::string& id = cmd.pause_id.empty() ? cmd.resume_id : cmd.pause_id;
    if (auto st = owned(id); !st) return fail(err, st.error());
    bj::object body{{"isActive", cmd.pause_id.empty()}};
    auto r = remote->call("PUT", base + "/" + id, json::dump(body));
    if (!r || !r->is_object())
      return fail(err, r ? Error{ErrorCode::kInternal, "unexpected response"} : r.error());
    printOne(*r);
    return 0;
  }
  auto list = remote->call("GET", base + "?lambdaUUID=" + uuid);
  if (!list) return fail(err, list.error());
  if (cmd.json) {
    out << prettyJson(*list);
    return 0;
  }
  if (!list->is_array() || list->as_array().empty()) {
    out << fmt::format("{} has no schedules; add one with --cron \"*/15 * * * *\".\n", cmd.name);
    return 0;
  }
  out << pad("UUID", 38) << pad("CRON (UTC)", 22) << pad("ACTIVE", 8) << pad("NEXT RUN", 26)
      << "LAST RESULT\n";
  for (const auto& v : list->as_array()) {
    if (!v.is_object()) continue;
    const auto& o = v.as_object();
    std::string last = "-";
    if (const auto* r = o.if_contains("lastResult"); r && r->is_object()) {
      const auto& lr = r->as_object();
      const auto* ok = lr.if_contains("ok");
      last =
          ok && ok->is_bool() && ok->as_bool()
              ? "ok " + formatTime(json::getInt(lr, "finishedAt"))
              : json::getString(lr, "errorCode") + " " + formatTime(json::getInt(lr, "finishedAt"));
    }
    const auto* active = o.if_contains("isActive");
    out << pad(json::getString(o, "uuid"), 38) << pad(json::getString(o, "cronExpression"), 22)
        << pad(active && active->is_bool() && active->as_bool() ? "yes" : "no", 8)
        << pad(formatTime(json::getInt(o, "nextRunAt")), 26) << last << "\n";
  }
  return 0;
}

int doGet(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  auto remote = connect(cmd);
  if (!remote) return fail(err, remote.error());
  auto list = remote->call("GET", remote->base());
  if (!list) return fail(err, list.error());
  bj::array functions;
  if (list->is_array())
    for (const auto& f : list->as_array())
      if (f.is_object() && (cmd.name.empty() || json::getString(f.as_object(), "name") == cmd.name))
        functions.push_back(f);
  if (!cmd.name.empty() && functions.empty())
    return fail(err,
                Error{ErrorCode::kNotFound, fmt::format("there is no function '{}'", cmd.name)});
  if (cmd.what == "functions") {
    if (cmd.json) {
      out << prettyJson(functions);
      return 0;
    }
    out << pad("NAME", 28) << pad("STATE", 13) << pad("VERSION", 9) << pad("EVENT", 36)
        << pad("LAST DEPLOYED", 26) << "UUID\n";
    for (const auto& v : functions) {
      const auto& f = v.as_object();
      std::int64_t deployed_at = 0;
      if (const auto* d = f.if_contains("lastDeployment"); d && d->is_object())
        deployed_at = json::getInt(d->as_object(), "deployedAt");
      out << pad(json::getString(f, "name"), 28) << pad(json::getString(f, "state"), 13)
          << pad(std::to_string(json::getInt(f, "version")), 9)
          << pad(json::getString(f, "event"), 36) << pad(formatTime(deployed_at), 26)
          << json::getString(f, "uuid") << "\n";
    }
    return 0;
  }
  bj::array all;
  for (const auto& v : functions) {
    const auto& f = v.as_object();
    auto ds =
        remote->call("GET", remote->base() + "/" + json::getString(f, "uuid") + "/deployments");
    if (!ds) return fail(err, ds.error());
    if (!ds->is_array()) continue;
    for (auto& d : ds->as_array()) {
      if (!d.is_object()) continue;
      d.as_object()["name"] = json::getString(f, "name");
      d.as_object().erase("code");
      all.push_back(d);
    }
  }
  if (cmd.json) {
    out << prettyJson(all);
    return 0;
  }
  out << pad("NAME", 28) << pad("STATE", 13) << pad("VERSION", 9) << pad("CREATED", 26)
      << pad("BY", 16) << "DEPLOYMENT\n";
  for (const auto& v : all) {
    const auto& d = v.as_object();
    out << pad(json::getString(d, "name"), 28) << pad(json::getString(d, "deploymentState"), 13)
        << pad(std::to_string(json::getInt(d, "lambdaVersion")), 9)
        << pad(formatTime(json::getInt(d, "createdAt")), 26)
        << pad(json::getString(d, "createdBy"), 16) << json::getString(d, "uuid") << "\n";
  }
  return 0;
}

}  // namespace

int runFunctionCommand(const FunctionCommand& cmd, std::ostream& out, std::ostream& err) {
  if (cmd.verb == "init") return doInit(cmd, out, err);
  if (cmd.verb == "push") return doPush(cmd, out, err);
  if (cmd.verb == "pull") return doPull(cmd, out, err);
  if (cmd.verb == "deploy" || cmd.verb == "undeploy") return doLifecycle(cmd, out, err);
  if (cmd.verb == "invoke") return doInvoke(cmd, out, err);
  if (cmd.verb == "logs") return doLogs(cmd, out, err);
  if (cmd.verb == "get") return doGet(cmd, out, err);
  if (cmd.verb == "schedule") return doSchedule(cmd, out, err);
  err << "Error: unknown command '" << cmd.verb << "'\n";
  return 1;
}

int runLoginCommand(const LoginCommand& cmd, std::ostream& out, std::ostream& err) {
  std::string password = cmd.password;
  if (password.empty())
    if (const char* p = std::getenv("PARLEY_PASSWORD")) password = p;
  if (password.empty())
    return fail(err, Error{ErrorCode::kInvalid, "give --password or set PARLEY_PASSWORD"});
  std::string ca;
  if (!cmd.ca.empty()) {
    std::error_code ec;
    ca = fs::absolute(cmd.ca, ec).string();
    if (ec) ca = cmd.ca;
  }
  std::string server = cmd.server;
  while (!server.empty() && server.back() == '/') server.pop_back();
  HttpClient client(server, ca, "");
  bj::object body{{"username", cmd.username}, {"password", password}};
  auto r = client.request("POST", "/api/account/" + cmd.account + "/login?v=1.3", json::dump(body));
  if (!r) return fail(err, r.error());
  if (r->status != 200)
    return fail(
        err, Error{ErrorCode::kUnauthorized, fmt::format("login failed: {}", apiErrorMessage(*r))});
  auto o = json::parseObject(r->body);
  if (!o) return fail(err, Error{ErrorCode::kInternal, "login response is not JSON"});
  std::string bearer = json::getString(*o, "bearer");
  if (bearer.empty()) return fail(err, Error{ErrorCode::kInternal, "login response has no bearer"});
  std::string path = cmd.config;
  if (path.empty()) {
    auto p = defaultConfigPath();
    if (!p) return fail(err, p.error());
    path = *p;
  }
  if (auto s = saveConfig(path, CliConfig{server, cmd.account, bearer, ca}); !s)
    return fail(err, s.error());
  out << fmt::format("Logged in to {} as {} (account {}); saved to {}.\n", server, cmd.username,
                     cmd.account, path);
  return 0;
}

}  // namespace parley::cli
