#include "cli/bot_commands.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/config.h"
#include "cli/http_client.h"
#include "cli/project.h"
#include "cli/rest_session.h"
#include "common/json.h"

namespace parley::cli {

namespace bj = boost::json;

namespace {

// Replay may run for up to two minutes on the server.
constexpr std::chrono::seconds kReplayTimeout{180};

struct Session : RestSession {
  std::string bots() const { return accountPath() + "/bots/"; }
};

Result<Session> connect(const BotCommand& cmd, std::chrono::seconds timeout) {
  auto s = openSession(cmd.config, timeout);
  if (!s) return std::unexpected(s.error());
  return Session{std::move(*s)};
}

// A version given on the command line: a number goes as a number.
bj::value versionValue(const std::string& v) {
  if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 18)
    return std::stoll(v);
  return bj::value(v);
}

std::string str(const bj::value& v) {
  return v.is_string() ? std::string(v.as_string()) : bj::serialize(v);
}

const bj::value& field(const bj::object& o, std::string_view k) {
  static const bj::value kNull;
  const bj::value* v = o.if_contains(k);
  return v ? *v : kNull;
}

std::string versionText(const bj::value& v) {
  if (!v.is_object()) return "?";
  const bj::object& o = v.as_object();
  return fmt::format("{} (version {})", str(field(o, "label")), str(field(o, "version")));
}

void printTurn(std::ostream& out, const bj::object& t) {
  out << fmt::format("[turn {}] {}", str(field(t, "turn")), str(field(t, "consumerMessage")));
  const bj::value& review = field(t, "review");
  if (review.is_object()) out << " → " << str(field(review.as_object(), "verdict"));
  out << fmt::format(" ({:.0f} ms)\n", field(t, "durationMs").is_number()
                                           ? field(t, "durationMs").to_number<double>()
                                           : 0.0);
  if (const bj::value& e = field(t, "error"); e.is_object())
    out << fmt::format("  function error: {}: {}\n", str(field(e.as_object(), "code")),
                       str(field(e.as_object(), "message")));
  if (review.is_object()) {
    const bj::object& r = review.as_object();
    auto items = [&](std::string_view key, std::string_view who) {
      const bj::value& list = field(r, key);
      if (!list.is_array()) return;
      for (const auto& i : list.as_array()) {
        const bj::object& o = i.as_object();
        std::string kind = str(field(o, "kind"));
        std::string what;
        if (kind == "DELAY") {
          what = fmt::format("(delay {} s)", str(field(o, "delaySeconds")));
        } else if (field(o, "text").is_string()) {
          what = str(field(o, "text"));
        } else {
          what = fmt::format("[{} {}]", kind, str(field(o, "contentType")));
        }
        if (field(o, "quickReplies").is_number())
          what += fmt::format(" [{} quick replies]", str(field(o, "quickReplies")));
        out << fmt::format("  {}: {}\n", who, what);
      }
    };
    items("consumerSees", "consumer sees");
    items("agentSees", "agents see");
    if (const bj::value& a = field(r, "action"); a.is_object())
      out << "  action: " << bj::serialize(a) << "\n";
    if (const bj::value& ps = field(r, "problems"); ps.is_array())
      for (const auto& p : ps.as_array())
        out << fmt::format("  problem at {}: {} ({})\n", str(field(p.as_object(), "path")),
                           str(field(p.as_object(), "message")), str(field(p.as_object(), "code")));
    if (const bj::value& ws = field(r, "warnings"); ws.is_array())
      for (const auto& w : ws.as_array())
        out << fmt::format("  warning at {}: {} ({})\n", str(field(w.as_object(), "path")),
                           str(field(w.as_object(), "message")), str(field(w.as_object(), "rule")));
  }
  if (const bj::value& e = field(t, "escalation"); e.is_object()) {
    const bj::object& o = e.as_object();
    out << fmt::format("  escalation: {}; after {} retries the connector escalates",
                       str(field(o, "code")), str(field(o, "retries")));
    if (field(o, "transferToSkill").is_string())
      out << " to skill " << str(field(o, "transferToSkill"));
    out << "\n";
  }
  if (const bj::value& s = field(t, "state"); s.is_string() && s.as_string() != "OPEN")
    out << "  the bot no longer owns the conversation: " << str(s) << "\n";
}

int runTest(const BotCommand& cmd, std::istream& in, std::ostream& out, std::ostream& err) {
  auto s = connect(cmd, std::chrono::seconds(60));
  if (!s) {
    err << "Error: " << s.error().message << "\n";
    return 1;
  }
  bj::object body{{"channel", cmd.channel}};
  if (!cmd.function_version.empty()) body["functionVersion"] = versionValue(cmd.function_version);
  std::string base = s->bots() + cmd.bot + "/tester";
  auto created = s->call("POST", base, bj::serialize(body));
  if (!created || !created->is_object()) {
    err << "Error: "
        << (created ? std::string("the server's answer is not a session") : created.error().message)
        << "\n";
    return 1;
  }
  const bj::object& session = created->as_object();
  std::string id = str(field(session, "sessionId"));
  std::string state = str(field(session, "state"));
  if (cmd.json) {
    bj::object head = session;
    head.erase("turns");
    out << bj::serialize(head) << "\n";
  } else {
    out << fmt::format("tester session {}: {} conversation {} with function {}\n", id,
                       str(field(session, "channel")), str(field(session, "conversationId")),
                       versionText(field(session, "functionVersion")));
  }
  auto show = [&](const bj::object& turn) {
    if (cmd.json)
      out << bj::serialize(turn) << "\n";
    else
      printTurn(out, turn);
    out.flush();
  };
  if (const bj::value& turns = field(session, "turns"); turns.is_array())
    for (const auto& t : turns.as_array()) show(t.as_object());
  int rc = 0;
  std::string line;
  while (state == "OPEN" && std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto r =
        s->call("POST", base + "/" + id + "/messages", bj::serialize(bj::object{{"text", line}}));
    if (!r || !r->is_object()) {
      err << "Error: " << (r ? std::string("unexpected answer") : r.error().message) << "\n";
      rc = 1;
      break;
    }
    show(field(r->as_object(), "turn").as_object());
    state = str(field(field(r->as_object(), "session").as_object(), "state"));
  }
  if (state != "OPEN" && !cmd.json) out << "the conversation ended (" << state << ")\n";
  (void)s->call("DELETE", base + "/" + id);
  return rc;
}

int runReplay(const BotCommand& cmd, std::ostream& out, std::ostream& err) {
  if (cmd.function_version.empty()) {
    err << "Error: --function-version is required: the version to replay the turns against\n";
    return kReplayFailed;
  }
  bj::object body{{"functionVersion", versionValue(cmd.function_version)}};
  if (!cmd.from.empty()) {
    std::ifstream f(cmd.from, std::ios::binary);
    if (!f) {
      err << "Error: cannot read " << cmd.from << "\n";
      return kReplayFailed;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    auto transcript = json::parse(ss.str());
    if (!transcript) {
      err << "Error: " << cmd.from << " is not JSON: " << transcript.error().message << "\n";
      return kReplayFailed;
    }
    body["from"] = std::move(*transcript);
  }
  auto s = connect(cmd, kReplayTimeout);
  if (!s) {
    err << "Error: " << s.error().message << "\n";
    return kReplayFailed;
  }
  auto r = s->call("POST", s->bots() + cmd.bot + "/replay", bj::serialize(body));
  if (!r || !r->is_object()) {
    err << "Error: " << (r ? std::string("the server's answer is not a report") : r.error().message)
        << "\n";
    return kReplayFailed;
  }
  const bj::object& rep = r->as_object();
  auto num = [&](std::string_view k) {
    const bj::value& v = field(rep, k);
    return v.is_int64()    ? v.as_int64()
           : v.is_uint64() ? static_cast<std::int64_t>(v.as_uint64())
                           : 0;
  };
  bool complete = field(rep, "complete").is_bool() && field(rep, "complete").as_bool();
  if (cmd.json) {
    out << prettyJson(rep);
  } else {
    out << fmt::format(
        "replayed {} of {} turns against function {}: {} same, {} changed, {} skipped{}\n",
        num("replayed"), num("turns"), versionText(field(rep, "functionVersion")), num("same"),
        num("changed"), num("skipped"),
        complete ? "" : fmt::format(", {} not run (time budget)", num("notRun")));
    if (const bj::value& results = field(rep, "results"); results.is_array())
      for (const auto& rv : results.as_array()) {
        const bj::object& t = rv.as_object();
        std::string status = str(field(t, "status"));
        if (status == "SAME") continue;
        out << fmt::format("turn {} (conversation {}, \"{}\"): {}", str(field(t, "index")),
                           str(field(t, "conversationId")), str(field(t, "consumerMessage")),
                           status);
        if (field(t, "reason").is_string()) out << ": " << str(field(t, "reason"));
        out << "\n";
        if (const bj::value& ds = field(t, "differences"); ds.is_array())
          for (const auto& dv : ds.as_array()) {
            const bj::object& d = dv.as_object();
            std::string where = str(field(d, "field"));
            if (field(d, "index").is_number()) where += "[" + str(field(d, "index")) + "]";
            out << fmt::format("  {}: {} → {}\n", where, bj::serialize(field(d, "before")),
                               bj::serialize(field(d, "after")));
          }
      }
  }
  if (!complete) return kReplayFailed;
  return num("changed") > 0 ? kReplayChanged : kReplaySame;
}

}  // namespace

int runBotCommand(const BotCommand& cmd, std::istream& in, std::ostream& out, std::ostream& err) {
  if (cmd.verb == "test") return runTest(cmd, in, out, err);
  if (cmd.verb == "replay") return runReplay(cmd, out, err);
  err << "Error: unknown command bot " << cmd.verb << "\n";
  return 1;
}

void registerBotCommands(CLI::App& app, std::function<int(const BotCommand&)> run) {
  CLI::App* bot = app.add_subcommand(
      "bot", "Try bots: chat with one (test), replay its recorded turns against a version");
  bot->require_subcommand(1);
  auto common = [](CLI::App* sub, BotCommand& c) {
    sub->add_option("--bot", c.bot, "The bot's id")->required();
    sub->add_option("--config", c.config,
                    "CLI config file (default: $PARLEY_CONFIG or ~/.config/parley/cli.json)");
    sub->add_flag("--json", c.json, "Print JSON");
  };
  {
    auto cmd = std::make_shared<BotCommand>();
    cmd->verb = "test";
    CLI::App* sub = bot->add_subcommand(
        "test", "Chat with the bot: one consumer message per line of stdin, each turn printed");
    common(sub, *cmd);
    sub->add_option("--function-version", cmd->function_version,
                    "draft (default), deployed, a version number or a deployment id");
    sub->add_option("--channel", cmd->channel, "MESSAGING (default) or CHAT (WELCOME first)")
        ->transform(CLI::IsMember({"MESSAGING", "CHAT"}, CLI::ignore_case));
    sub->callback([cmd, run] {
      for (auto& ch : cmd->channel)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      int rc = run(*cmd);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  {
    auto cmd = std::make_shared<BotCommand>();
    cmd->verb = "replay";
    CLI::App* sub = bot->add_subcommand(
        "replay",
        "Replay the bot's recorded turns against a function version; exit 0: no differences, "
        "1: differences, 2: the replay failed");
    common(sub, *cmd);
    sub->add_option("--function-version", cmd->function_version,
                    "draft, deployed, a version number or a deployment id")
        ->required();
    sub->add_option("--from", cmd->from,
                    "A transcript file (GET bots/{id}/turns, or a tester session) instead of "
                    "the bot's turn records")
        ->check(CLI::ExistingFile);
    sub->callback([cmd, run] {
      int rc = run(*cmd);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
}

void registerBotCommands(CLI::App& app) {
  registerBotCommands(
      app, [](const BotCommand& c) { return runBotCommand(c, std::cin, std::cout, std::cerr); });
}

}  // namespace parley::cli
