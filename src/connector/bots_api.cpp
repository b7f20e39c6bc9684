#include "connector/bots_api.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <future>

#include "common/json.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/random.h"
#include "connector/conversation_state.h"
#include "connector/input.h"
#include "connector/response.h"

namespace parley::connector {

namespace bj = boost::json;
namespace asio = boost::asio;

namespace {

api::Response errorResponse(const Error& e) {
  bj::object err{{"code", errorCodeName(e.code)}, {"message", e.message}};
  return api::Response{httpStatus(e.code), bj::serialize(bj::object{{"error", std::move(err)}})};
}

std::string botUserLogin(const std::string& name) {
  std::string s = "bot.";
  for (char c : name)
    s += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
  return s + "." + randomHex(3);
}

}  // namespace

bj::object BotsApi::botJson(const store::BotRecord& b) {
  bj::object o = botConfigJson(botConfigFromStored(b.config_json));
  o["id"] = b.id.str();
  o["userId"] = b.user.str();
  o["status"] = store::botStatusName(b.status);
  o["createdAt"] = b.created_at;
  o["updatedAt"] = b.updated_at;
  return o;
}

Status BotsApi::resolveSkills(const AccountId& acc, BotConfig& c) {
  auto skills = d_.store.accounts().listSkills(acc);
  if (!skills) return std::unexpected(skills.error());
  d_.skills.put(acc, *skills);  // a bot create/update refreshes the turn-time cache
  c.skill_ids.clear();
  for (const auto& want : c.skills) {
    std::optional<SkillId> found;
    for (const auto& s : *skills)
      if (s.name == want || s.id.str() == want) found = s.id;
    if (!found)
      return invalid(
          fmt::format("skill \"{}\" does not exist; create it first (POST skills)", want));
    c.skill_ids.push_back(*found);
  }
  if (!c.escalation.skill.empty()) {
    bool ok = false;
    for (const auto& s : *skills) ok = ok || s.name == c.escalation.skill;
    if (!ok)
      return invalid(
          fmt::format("escalation skill \"{}\" does not exist (skill names are case-sensitive)",
                      c.escalation.skill));
  }
  return {};
}

Status BotsApi::syncUser(const AccountId& acc, const UserId& user, const BotConfig& c) {
  auto u = d_.store.accounts().getUser(acc, user);
  if (!u) return std::unexpected(u.error());
  u->skills = c.skill_ids;
  if (auto s = d_.store.accounts().updateUser(*u); !s) return s;
  return {};
}

Result<BotsApi::NewBot> BotsApi::checkNewBot(const AccountId& acc, const bj::object& body) {
  auto& st = d_.store;
  NewBot nb;
  auto cfg = parseBotConfig(body);
  if (!cfg) return std::unexpected(cfg.error());
  nb.cfg = std::move(*cfg);
  if (auto s = resolveSkills(acc, nb.cfg); !s) return std::unexpected(s.error());
  if (auto f = st.functions().getFunction(acc, nb.cfg.function); !f)
    return invalid(fmt::format("function {} does not exist in this account (functionUuid)",
                               nb.cfg.function.str()));
  auto uid = json::optString(body, "userId");
  if (!uid) return std::unexpected(uid.error());
  if (*uid) {
    auto u = st.accounts().getUser(acc, UserId(**uid));
    if (!u) return invalid(fmt::format("user {} does not exist (userId)", **uid));
    if (u->type != store::UserType::kBot)
      return invalid(
          fmt::format("user {} is not of type BOT; a bot needs a dedicated BOT user", **uid));
    nb.user = u->id;
  }
  return nb;
}

Result<bj::object> BotsApi::createBot(const AccountId& acc, const bj::object& body) {
  auto& st = d_.store;
  auto nb = checkNewBot(acc, body);
  if (!nb) return std::unexpected(nb.error());
  const BotConfig& cfg = nb->cfg;
  UserId user_id;
  if (nb->user) {
    user_id = *nb->user;
    if (auto s = syncUser(acc, user_id, cfg); !s) return std::unexpected(s.error());
  } else {
    store::User u;
    u.account = acc;
    u.login_name = botUserLogin(cfg.name);
    u.pid = randomUuid();
    u.password_hash = "!";  // no password login
    u.roles = {store::Role::kAgent};
    u.type = store::UserType::kBot;
    u.skills = cfg.skill_ids;
    u.max_open_conversations = d_.opts.max_open_conversations;
    auto created = st.accounts().createUser(u);
    if (!created) return std::unexpected(created.error());
    user_id = created->id;
  }
  store::BotRecord rec;
  rec.account = acc;
  rec.id = BotId(randomUuid());
  rec.name = cfg.name;
  rec.user = user_id;
  rec.config_json = bj::serialize(botConfigJson(cfg));
  rec.status = store::BotStatus::kOffline;
  rec.created_at = rec.updated_at = d_.clock.nowMs();
  if (auto s = st.bots().createBot(rec); !s) {
    if (s.error().code == ErrorCode::kConflict)
      return conflict(
          fmt::format("user {} already belongs to another bot; a bot user serves one "
                      "bot only",
                      user_id.str()));
    return std::unexpected(s.error());
  }
  return botJson(rec);
}

Result<bj::object> BotsApi::updateBot(const AccountId& acc, const BotId& id,
                                      const bj::object& body) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  BotConfig base = botConfigFromStored(rec->config_json);
  auto cfg = parseBotConfig(body, &base);
  if (!cfg) return std::unexpected(cfg.error());
  if (auto s = resolveSkills(acc, *cfg); !s) return std::unexpected(s.error());
  if (auto f = d_.store.functions().getFunction(acc, cfg->function); !f)
    return invalid(fmt::format("function {} does not exist in this account", cfg->function.str()));
  if (auto s = syncUser(acc, rec->user, *cfg); !s) return std::unexpected(s.error());
  rec->name = cfg->name;
  rec->config_json = bj::serialize(botConfigJson(*cfg));
  rec->updated_at = d_.clock.nowMs();
  if (auto s = d_.store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  if (auto rt = d_.registry.find(acc, id)) {
    rt->setConfig(std::make_shared<const BotConfig>(*cfg));
    // Re-reads the user's skills; a bot in SERVICE_INTERRUPTION stays out of routing.
    bool interrupted = rt->status() == store::BotStatus::kServiceInterruption;
    (void)d_.control.setAvailability(
        *rt, interrupted ? store::Availability::kAway : store::Availability::kOnline);
  }
  changed(acc, "bot", id.str());
  return botJson(*rec);
}

Status BotsApi::deleteBot(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  d_.control.deactivate(acc, id);
  d_.control.handOff(acc, id, rec->user, botConfigFromStored(rec->config_json));
  if (auto s = d_.store.bots().deleteBot(acc, id); !s) return s;
  changed(acc, "bot", id.str());
  return {};
}

Result<bj::object> BotsApi::getBot(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  bj::object o = botJson(*rec);
  if (auto rt = d_.registry.find(acc, id)) o["status"] = store::botStatusName(rt->status());
  return o;
}

Result<bj::array> BotsApi::listBots(const AccountId& acc) {
  auto list = d_.store.bots().listBots(acc);
  if (!list) return std::unexpected(list.error());
  bj::array out;
  for (const auto& b : *list) out.push_back(botJson(b));
  return out;
}

Result<bj::object> BotsApi::startBot(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  BotConfig cfg = botConfigFromStored(rec->config_json);
  if (!cfg.disclaimer_accepted)
    return invalid(
        "the bot cannot start: the data disclaimer has not been accepted; set "
        "disclaimerAccepted: true (PUT bots/{id}) to agree that conversation data is sent to "
        "the function");
  if (auto f = d_.store.functions().getFunction(acc, cfg.function); !f)
    return invalid(
        fmt::format("the bot cannot start: function {} does not exist", cfg.function.str()));
  if (d_.registry.find(acc, id)) return botJson(*rec);
  rec->status = store::BotStatus::kOnline;
  rec->updated_at = d_.clock.nowMs();
  if (auto s = d_.store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  if (auto s = d_.control.activate(*rec); !s) return std::unexpected(s.error());
  changed(acc, "bot", id.str());
  return botJson(*rec);
}

Status BotsApi::refreshBot(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec && rec.error().code != ErrorCode::kNotFound) return std::unexpected(rec.error());
  if (!rec || rec->status == store::BotStatus::kOffline) {
    d_.control.deactivate(acc, id);
    return {};
  }
  auto rt = d_.registry.find(acc, id);
  if (!rt) return d_.control.activate(*rec);
  rt->setConfig(std::make_shared<const BotConfig>(botConfigFromStored(rec->config_json)));
  const bool interrupted = rt->status() == store::BotStatus::kServiceInterruption;
  return d_.control.setAvailability(
      *rt, interrupted ? store::Availability::kAway : store::Availability::kOnline);
}

Result<bj::object> BotsApi::stopBot(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  d_.control.deactivate(acc, id);
  rec->status = store::BotStatus::kOffline;
  rec->updated_at = d_.clock.nowMs();
  if (auto s = d_.store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  // After the status is stored: a crash in between is finished by the next start().
  d_.control.handOff(acc, id, rec->user, botConfigFromStored(rec->config_json));
  changed(acc, "bot", id.str());
  return botJson(*rec);
}

Result<bj::object> BotsApi::testConnection(const AccountId& acc, const BotId& id) {
  auto rec = d_.store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  return runTestConnection(acc, botConfigFromStored(rec->config_json));
}

Result<bj::object> BotsApi::testConnectionUnsaved(const AccountId& acc, const bj::object& body) {
  auto nb = checkNewBot(acc, body);
  if (!nb) return std::unexpected(nb.error());
  return runTestConnection(acc, nb->cfg);
}

bj::object BotsApi::runTestConnection(const AccountId& acc, const BotConfig& cfg) {
  auto req = functions::InvokeRequest::of(acc, cfg.function)
                 .withInput(bj::serialize(sampleFunctionInput(d_.clock.nowMs())))
                 .within(std::chrono::milliseconds(cfg.escalation.turn_timeout_ms));
  auto p = std::make_shared<std::promise<functions::InvokeResult>>();
  auto fut = p->get_future();
  auto t0 = SteadyClock::now();
  d_.runner.invoke(std::move(req), [p](functions::InvokeResult r) { p->set_value(std::move(r)); });
  if (fut.wait_for(std::chrono::milliseconds(cfg.escalation.turn_timeout_ms + 5000)) !=
      std::future_status::ready)
    return bj::object{
        {"ok", false},
        {"latencyMs", msSince(t0)},
        {"errors",
         bj::array{bj::object{{"code", std::string(kCodePrefix) + "aivendor.faas.testConnection"},
                              {"path", ""},
                              {"message", "the function did not answer in time"}}}}};
  functions::InvokeResult r = fut.get();
  double latency = msSince(t0);
  bj::array errors;
  bj::value response;
  if (!r.ok) {
    errors.push_back(bj::object{
        {"code", std::string(kCodePrefix) + codes::kInvokeLambda},
        {"path", ""},
        {"message", fmt::format("the function failed: {}: {}", r.error_code, r.error_message)}});
  } else {
    boost::system::error_code ec;
    response = bj::parse(r.result_json, ec);
    PlanOptions po;
    po.channel = cfg.conversation_types.empty() ? store::Channel::kMessaging
                                                : cfg.conversation_types.front();
    po.image_allowlist = d_.allowlists.forAccount(acc);
    po.conversation_id = "test-connection";
    ResponsePlan plan = planResponse(r.result_json, d_.validator, po);
    auto add = [&](const Problem& pr) {
      bj::object e = pr.toJson();
      e["code"] = std::string(kCodePrefix) + pr.code;
      errors.push_back(std::move(e));
    };
    if (plan.fatal) add(*plan.fatal);
    for (const auto& pr : plan.refused) add(pr);
  }
  return bj::object{{"ok", errors.empty()},
                    {"latencyMs", latency},
                    {"errors", std::move(errors)},
                    {"response", std::move(response)}};
}

Result<bj::array> BotsApi::listTurns(const AccountId& acc, const BotId& id, int limit) {
  if (auto rec = d_.store.bots().getBot(acc, id); !rec) return std::unexpected(rec.error());
  auto turns = d_.store.bots().listTurns(acc, id, limit);
  if (!turns) return std::unexpected(turns.error());
  bj::array out;
  auto parse = [](const std::string& s) {
    boost::system::error_code ec;
    bj::value v = bj::parse(s, ec);
    return ec ? bj::value(s) : v;
  };
  for (const auto& t : *turns)
    out.push_back(
        bj::object{{"turnId", t.turn_id},
                   {"conversationId", t.conversation.str()},
                   {"ts", t.ts},
                   {"outcome", t.outcome},
                   {"input", parse(t.input_json)},
                   {"response", t.response_json.empty() ? bj::value() : parse(t.response_json)},
                   {"actions", parse(t.actions_json)},
                   {"timings", parse(t.timings_json)},
                   {"error", t.error}});
  return out;
}

void BotsApi::handle(api::Request request, std::function<void(api::Response)> done) {
  asio::post(d_.pool, [this, request = std::move(request), done = std::move(done)]() mutable {
    api::Response resp;
    try {
      const auto& p = request.path;
      const AccountId& acc = request.caller.account;
      // The policy's answer (docs/authorization.md); nullopt when allowed.
      auto refused = [&](policy::Action action) -> std::optional<api::Response> {
        if (auto st = policy::authorize(request.caller.subject(), action); !st)
          return errorResponse(st.error());
        return std::nullopt;
      };
      auto ok = [](int status, const bj::value& v) {
        return api::Response{status, bj::serialize(v)};
      };
      auto body = [&]() -> Result<bj::object> {
        if (request.body.empty()) return bj::object{};
        return json::parseObject(request.body);
      };
      // The conversation tester and replay answer asynchronously (they invoke functions).
      if (p.size() >= 3 && (p[2] == "tester" || p[2] == "replay")) {
        BotId id(p[1]);
        if (p[2] == "replay" && p.size() == 3 && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsReplay)) return done(*no);
          return d_.replay.run(request, id, std::move(done));
        }
        if (p[2] == "tester" && p.size() == 3 && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsTesterCreate)) return done(*no);
          return d_.tester.create(request, id, std::move(done));
        }
        if (p[2] == "tester" && p.size() == 4 && request.method == "GET") {
          if (auto no = refused(policy::Action::kBotsTesterGet)) return done(*no);
          return done(d_.tester.get(request, id, p[3]));
        }
        if (p[2] == "tester" && p.size() == 4 && request.method == "DELETE") {
          if (auto no = refused(policy::Action::kBotsTesterDelete)) return done(*no);
          return done(d_.tester.remove(request, id, p[3]));
        }
        if (p[2] == "tester" && p.size() == 5 && p[4] == "messages" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsTesterMessage)) return done(*no);
          return d_.tester.message(request, id, p[3], std::move(done));
        }
        return done(errorResponse(
            Error{ErrorCode::kNotFound,
                  "unknown call; use POST bots/{id}/tester, GET|DELETE bots/{id}/tester/{session}, "
                  "POST bots/{id}/tester/{session}/messages or POST bots/{id}/replay"}));
      }
      if (p.size() == 1 && request.method == "GET") {
        if (auto no = refused(policy::Action::kBotsList)) {
          resp = *no;
        } else {
          auto r = listBots(acc);
          resp = r ? ok(200, *r) : errorResponse(r.error());
        }
      } else if (p.size() == 1 && request.method == "POST") {
        if (auto no = refused(policy::Action::kBotsCreate)) {
          resp = *no;
        } else if (auto b = body(); !b) {
          resp = errorResponse(b.error());
        } else {
          auto r = createBot(acc, *b);
          resp = r ? ok(201, *r) : errorResponse(r.error());
        }
      } else if (p.size() == 2 && p[1] == "test-connection") {
        if (request.method != "POST") {
          resp = errorResponse(Error{ErrorCode::kInvalid, "use POST on bots/test-connection"});
        } else if (auto no = refused(policy::Action::kBotsTestConnectionUnsaved)) {
          resp = *no;
        } else if (auto b = body(); !b) {
          resp = errorResponse(b.error());
        } else {
          auto r = testConnectionUnsaved(acc, *b);
          resp = r ? ok(200, *r) : errorResponse(r.error());
        }
      } else if (p.size() == 2 && p[1] == "image-allowlist") {
        if (request.method == "GET") {
          if (auto no = refused(policy::Action::kImageAllowlistGet)) {
            resp = *no;
          } else {
            auto r = Result<bj::object>(d_.allowlists.json(acc));
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "PUT") {
          if (auto no = refused(policy::Action::kImageAllowlistPut)) {
            resp = *no;
          } else if (auto b = body(); !b) {
            resp = errorResponse(b.error());
          } else {
            auto r = d_.allowlists.put(acc, *b);
            if (r) changed(acc, "image-allowlist", "");
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "DELETE") {
          if (auto no = refused(policy::Action::kImageAllowlistDelete)) {
            resp = *no;
          } else {
            auto r = d_.allowlists.remove(acc);
            if (r) changed(acc, "image-allowlist", "");
            resp = r ? ok(200, bj::object{{"deleted", true}}) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(
              Error{ErrorCode::kInvalid, "use GET, PUT or DELETE on bots/image-allowlist"});
        }
      } else if (p.size() == 2) {
        BotId id(p[1]);
        if (request.method == "GET") {
          if (auto no = refused(policy::Action::kBotsGet)) {
            resp = *no;
          } else {
            auto r = getBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "PUT" || request.method == "PATCH") {
          if (auto no = refused(policy::Action::kBotsUpdate)) {
            resp = *no;
          } else if (auto b = body(); !b) {
            resp = errorResponse(b.error());
          } else {
            auto r = updateBot(acc, id, *b);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "DELETE") {
          if (auto no = refused(policy::Action::kBotsDelete)) {
            resp = *no;
          } else {
            auto r = deleteBot(acc, id);
            resp = r ? ok(200, bj::object{{"deleted", true}}) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(Error{ErrorCode::kInvalid, "use GET, PUT or DELETE on bots/{id}"});
        }
      } else if (p.size() == 3) {
        BotId id(p[1]);
        const std::string& op = p[2];
        if (op == "start" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsStart)) {
            resp = *no;
          } else {
            auto r = startBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "stop" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsStop)) {
            resp = *no;
          } else {
            auto r = stopBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "test-connection" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsTestConnection)) {
            resp = *no;
          } else {
            auto r = testConnection(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "turns" && request.method == "GET") {
          if (auto no = refused(policy::Action::kBotsTurns)) {
            resp = *no;
          } else {
            int limit = 50;
            if (auto it = request.query.find("limit"); it != request.query.end())
              limit = std::clamp(std::atoi(it->second.c_str()), 1, 500);
            auto r = listTurns(acc, id, limit);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(Error{ErrorCode::kNotFound,
                                     "unknown bots call; use POST bots/{id}/start|stop|"
                                     "test-connection or GET bots/{id}/turns"});
        }
      } else {
        resp = errorResponse(Error{ErrorCode::kNotFound, "unknown bots call"});
      }
    } catch (const std::exception& e) {
      resp = errorResponse(Error{ErrorCode::kInternal, std::string("bots: ") + e.what()});
    }
    done(std::move(resp));
  });
}

}  // namespace parley::connector
