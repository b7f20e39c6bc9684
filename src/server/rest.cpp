#include "server/rest.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <memory>

#include "common/json.h"
#include "common/names.h"
#include "common/policy.h"
#include "common/random.h"
#include "server/apikeys_rest.h"
#include "server/apps_rest.h"
#include "server/conversation_access.h"
#include "store/engagement_attributes.h"

namespace parley::server {
namespace {

namespace bj = boost::json;
using Done = std::function<void(api::Response)>;

bj::object userObject(const store::User& u) {
  bj::array roles;
  for (auto r : u.roles) roles.emplace_back(store::roleName(r));
  bj::array skills;
  for (const auto& s : u.skills) skills.emplace_back(s.str());
  return bj::object{{"id", u.id.str()},
                    {"pid", u.pid},
                    {"loginName", u.login_name},
                    {"roles", std::move(roles)},
                    {"type", store::userTypeName(u.type)},
                    {"skills", std::move(skills)},
                    {"skillIds", bj::array(skills)},
                    {"maxOpenConversations", u.max_open_conversations},
                    {"isEnabled", u.status == store::UserStatus::kEnabled},
                    {"createdAt", u.created_at}};
}

bj::object conversationObject(const store::Conversation& c) {
  bj::array parts;
  for (const auto& p : c.participants)
    parts.emplace_back(bj::object{{"id", p.id},
                                  {"role", store::participantRoleName(p.role)},
                                  {"state", store::participantStateName(p.state)},
                                  {"joinedAt", p.joined_at}});
  bj::value ctx = bj::object{};
  if (auto v = json::parse(c.context_json)) ctx = std::move(*v);
  return bj::object{
      {"id", c.id.str()},
      {"accountId", c.account.str()},
      {"consumerId", c.consumer.str()},
      {"channel", store::channelName(c.channel)},
      {"state", store::stateName(c.state)},
      {"skillId", c.skill.str()},
      {"ttr", bj::object{{"ttrType", store::ttrTypeName(c.ttr_type)}, {"value", c.ttr_value_s}}},
      {"ttrDueAt", c.ttr_due_at},
      {"startTs", c.start_ts},
      {"endTs", c.end_ts},
      {"updatedAt", c.updated_at},
      {"closeReason", store::closeReasonText(c.close_reason)},
      {"nextSequence", c.next_sequence},
      {"participants", std::move(parts)},
      {"context", std::move(ctx)}};
}

bj::object messageObject(const store::Message& m) {
  bj::value ev = bj::object{};
  if (auto v = json::parse(m.event_json)) ev = std::move(*v);
  bj::value md = bj::array{};
  if (auto v = json::parse(m.metadata_json)) md = std::move(*v);
  return bj::object{{"conversationId", m.conversation.str()},
                    {"sequence", m.sequence},
                    {"serverTimestamp", m.server_ts},
                    {"originatorId", m.originator_id},
                    {"originatorPId", m.originator_pid},
                    {"role", store::participantRoleName(m.originator_role)},
                    {"messageAudience", store::audienceName(m.audience)},
                    {"event", std::move(ev)},
                    {"metadata", std::move(md)}};
}

// The policy's answer for `action` (docs/authorization.md); answers 403 itself when refused.
bool allowed(const Principal& p, policy::Action action, const Done& done) {
  auto st = policy::authorize(p.caller().subject(), action);
  if (st) return true;
  done(errorResponse(st.error()));
  return false;
}

Result<std::vector<SkillId>> parseSkills(store::Store& store, const AccountId& acc,
                                         const bj::object& o) {
  std::vector<SkillId> out;
  auto it = o.find("skills");
  if (it == o.end() || it->value().is_null()) it = o.find("skillIds");
  if (it == o.end() || it->value().is_null()) return out;
  if (!it->value().is_array()) return invalid("skills must be an array of skill ids or names");
  auto known = store.accounts().listSkills(acc);
  if (!known) return std::unexpected(known.error());
  for (const auto& v : it->value().as_array()) {
    std::string ref;
    if (v.is_string())
      ref = std::string(v.as_string());
    else if (v.is_int64())
      ref = std::to_string(v.as_int64());
    else
      return invalid("skills must be an array of skill ids or names");
    const store::Skill* found = nullptr;
    for (const auto& s : *known)
      if (s.id.str() == ref || s.name == ref) found = &s;
    if (!found)
      return invalid(fmt::format("skill '{}' does not exist in account {}", ref, acc.str()));
    out.push_back(found->id);
  }
  return out;
}

// `isEnabled` (LivePerson's users API) when present: nullopt when absent.
Result<std::optional<bool>> parseEnabled(const bj::object& o) {
  auto it = o.find("isEnabled");
  if (it == o.end() || it->value().is_null()) return std::optional<bool>();
  if (!it->value().is_bool()) return invalid("isEnabled must be true or false");
  return std::optional<bool>(it->value().as_bool());
}

void refreshAgent(RestDeps& d, const AccountId& acc, const UserId& id) {
  d.service.refreshAgent(acc, id, [acc, id](Status s) {
    if (!s && s.error().code != ErrorCode::kNotFound)
      spdlog::warn("refreshAgent {}.{}: {}", acc.str(), id.str(), s.error().message);
  });
}

// ------------------------------------------------------------------------------------- skills

void skills(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  const AccountId& acc = p.user.account;
  if (req.path.size() == 1 && req.method == "GET") {
    if (!allowed(p, policy::Action::kSkillsList, done)) return;
    auto list = d.store.accounts().listSkills(acc);
    if (!list) return done(errorResponse(list.error()));
    bj::array arr;
    for (const auto& s : *list)
      arr.emplace_back(
          bj::object{{"id", s.id.str()}, {"name", s.name}, {"createdAt", s.created_at}});
    return done(jsonResponse(arr));
  }
  if (req.path.size() == 1 && req.method == "POST") {
    if (!allowed(p, policy::Action::kSkillsCreate, done)) return;
    auto body = json::parseObject(req.body);
    if (!body) return done(errorResponse(body.error()));
    auto name = json::requireString(*body, "name");
    if (!name) return done(errorResponse(name.error()));
    if (auto st = validateName("skill name", *name, 100); !st)
      return done(errorResponse(st.error()));
    store::Skill s;
    s.account = acc;
    s.name = *name;
    s.created_at = d.clock.nowMs();
    auto created = d.store.accounts().createSkill(s);
    if (!created) return done(errorResponse(created.error()));
    return done(jsonResponse(
        bj::object{
            {"id", created->id.str()}, {"name", created->name}, {"createdAt", created->created_at}},
        201));
  }
  if (req.path.size() == 2 && req.method == "DELETE") {
    if (!allowed(p, policy::Action::kSkillsDelete, done)) return;
    auto st = d.store.accounts().deleteSkill(acc, SkillId(req.path[1]));
    if (!st) return done(errorResponse(st.error()));
    return done(jsonResponse(bj::object{{"deleted", req.path[1]}}));
  }
  done(
      errorResponse(ErrorCode::kNotFound,
                    fmt::format("no route {} skills/…; use GET/POST skills or DELETE skills/{{id}}",
                                req.method)));
}

// -------------------------------------------------------------------------------------- users

void users(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  const AccountId& acc = p.user.account;
  auto& accounts = d.store.accounts();
  if (req.path.size() == 1 && req.method == "GET") {
    if (!allowed(p, policy::Action::kUsersList, done)) return;
    auto list = accounts.listUsers(acc);
    if (!list) return done(errorResponse(list.error()));
    bj::array arr;
    for (const auto& u : *list) arr.emplace_back(userObject(u));
    return done(jsonResponse(arr));
  }
  if (req.path.size() == 2 && req.method == "GET") {
    if (!allowed(p, policy::Action::kUsersGet, done)) return;
    auto u = accounts.getUser(acc, UserId(req.path[1]));
    if (!u) return done(errorResponse(u.error()));
    return done(jsonResponse(userObject(*u)));
  }
  if (req.path.size() == 1 && req.method == "POST") {
    if (!allowed(p, policy::Action::kUsersCreate, done)) return;
    auto body = json::parseObject(req.body);
    if (!body) return done(errorResponse(body.error()));
    auto login = json::requireString(*body, "loginName");
    if (!login) return done(errorResponse(login.error()));
    auto password = json::requireString(*body, "password");
    if (!password) return done(errorResponse(password.error()));
    if (auto st = validateName("loginName", *login, 100); !st)
      return done(errorResponse(st.error()));
    if (password->size() < 6 || password->size() > 200)
      return done(errorResponse(ErrorCode::kInvalid, "password must be 6 to 200 characters"));
    auto roles = parseRoleNames(*body, "roles");
    if (!roles) return done(errorResponse(roles.error()));
    store::User u;
    u.account = acc;
    u.login_name = *login;
    u.pid = randomUuid();
    u.roles = *roles;
    std::string type = json::getString(*body, "type", "HUMAN");
    auto t = store::parseUserType(type);
    if (!t) return done(errorResponse(ErrorCode::kInvalid, "type must be HUMAN or BOT"));
    u.type = *t;
    if (u.roles.empty()) u.roles.push_back(store::Role::kAgent);
    auto skills = parseSkills(d.store, acc, *body);
    if (!skills) return done(errorResponse(skills.error()));
    u.skills = *skills;
    auto max_open = json::optInt(*body, "maxOpenConversations");
    if (!max_open) return done(errorResponse(max_open.error()));
    if (*max_open) {
      if (**max_open < 0 || **max_open > 100000)
        return done(errorResponse(ErrorCode::kInvalid, "maxOpenConversations must be 0..100000"));
      u.max_open_conversations = static_cast<int>(**max_open);
    } else if (u.type == store::UserType::kBot) {
      u.max_open_conversations = 1000;
    }
    auto enabled = parseEnabled(*body);
    if (!enabled) return done(errorResponse(enabled.error()));
    if (*enabled && !**enabled) u.status = store::UserStatus::kDisabled;
    auto hash = d.auth.hashPassword(*password, d.password_cost);
    if (!hash) return done(errorResponse(hash.error()));
    u.password_hash = *hash;
    u.created_at = d.clock.nowMs();
    auto created = accounts.createUser(u);
    if (!created) return done(errorResponse(created.error()));
    d.directory.put(*created);
    refreshAgent(d, acc, created->id);
    return done(jsonResponse(userObject(*created), 201));
  }
  if (req.path.size() == 2 && req.method == "PATCH") {
    if (!allowed(p, policy::Action::kUsersUpdate, done)) return;
    auto body = json::parseObject(req.body);
    if (!body) return done(errorResponse(body.error()));
    auto u = accounts.getUser(acc, UserId(req.path[1]));
    if (!u) return done(errorResponse(u.error()));
    const store::User before = *u;
    if (body->contains("loginName")) {
      auto login = json::requireString(*body, "loginName");
      if (!login)
        return done(errorResponse(ErrorCode::kInvalid, "loginName must be a non-empty string"));
      if (auto st = validateName("loginName", *login, 100); !st)
        return done(errorResponse(st.error()));
      u->login_name = *login;
    }
    if (body->contains("password")) {
      auto pw = json::requireString(*body, "password");
      if (!pw || pw->size() < 6 || pw->size() > 200)
        return done(errorResponse(ErrorCode::kInvalid, "password must be 6 to 200 characters"));
      auto hash = d.auth.hashPassword(*pw, d.password_cost);
      if (!hash) return done(errorResponse(hash.error()));
      u->password_hash = *hash;
    }
    auto enabled = parseEnabled(*body);
    if (!enabled) return done(errorResponse(enabled.error()));
    if (*enabled) {
      if (!**enabled && u->id == p.user.id)
        return done(errorResponse(ErrorCode::kInvalid, "you cannot disable your own user"));
      u->status = **enabled ? store::UserStatus::kEnabled : store::UserStatus::kDisabled;
    }
    if (body->contains("roles")) {
      auto roles = parseRoleNames(*body, "roles");
      if (!roles) return done(errorResponse(roles.error()));
      u->roles = *roles;
    }
    if (body->contains("type")) {
      auto t = store::parseUserType(json::getString(*body, "type"));
      if (!t) return done(errorResponse(ErrorCode::kInvalid, "type must be HUMAN or BOT"));
      u->type = *t;
    }
    if (body->contains("skills") || body->contains("skillIds")) {
      auto skills = parseSkills(d.store, acc, *body);
      if (!skills) return done(errorResponse(skills.error()));
      u->skills = *skills;
    }
    if (body->contains("maxOpenConversations")) {
      auto m = json::optInt(*body, "maxOpenConversations");
      if (!m || !*m || **m < 0 || **m > 100000)
        return done(errorResponse(ErrorCode::kInvalid, "maxOpenConversations must be 0..100000"));
      u->max_open_conversations = static_cast<int>(**m);
    }
    if (auto st = accounts.updateUser(*u); !st) return done(errorResponse(st.error()));
    // A new password, other roles or a disabled user: every session and API key of the user
    // ends now, and its sockets close.
    if (u->password_hash != before.password_hash || u->roles != before.roles ||
        u->status != before.status || u->type != before.type) {
      if (auto st = d.auth.revokeUser(acc, u->id); !st) return done(errorResponse(st.error()));
    }
    d.directory.put(*u);
    refreshAgent(d, acc, u->id);
    return done(jsonResponse(userObject(*u)));
  }
  if (req.path.size() == 2 && req.method == "DELETE") {
    if (!allowed(p, policy::Action::kUsersDelete, done)) return;
    if (req.path[1] == p.user.id.str())
      return done(errorResponse(ErrorCode::kInvalid, "you cannot delete your own user"));
    auto st = accounts.deleteUser(acc, UserId(req.path[1]));
    if (!st) return done(errorResponse(st.error()));
    // deleteUser dropped its sessions and keys; this closes its sockets.
    (void)d.auth.revokeUser(acc, UserId(req.path[1]));
    d.directory.remove(acc, UserId(req.path[1]));
    refreshAgent(d, acc, UserId(req.path[1]));
    return done(jsonResponse(bj::object{{"deleted", req.path[1]}}));
  }
  done(errorResponse(ErrorCode::kNotFound,
                     fmt::format("no route {} users/…; use GET/POST users, GET/PATCH/DELETE "
                                 "users/{{id}}",
                                 req.method)));
}

// ------------------------------------------------------------------------------ conversations

// DELETE conversations/{id}/content: erases a closed conversation's content (a GDPR erasure
// request; store::Store::eraseConversationContent says what is kept). The store checks, in the
// erasure's own transaction, that the conversation is closed, and the engine of no node holds a
// closed conversation, so no route through the owner is needed.
void eraseContent(RestDeps& d, const Principal& p, ConversationId id, const Done& done) {
  if (!allowed(p, policy::Action::kConversationsErase, done)) return;
  d.blocking.run([&d, acc = p.user.account, id = std::move(id), done] {
    auto r = d.store.eraseConversationContent(acc, id);
    if (!r) return done(errorResponse(r.error()));
    spdlog::info(
        "conversation {} of account {}: content erased ({} messages, {} turn records, "
        "{} context properties)",
        id.str(), acc.str(), r->messages, r->turns, r->properties);
    done(jsonResponse(bj::object{{"conversationId", id.str()},
                                 {"erased", bj::object{{"messages", r->messages},
                                                       {"context", r->context},
                                                       {"turnRecords", r->turns},
                                                       {"pendingTurns", r->pending_turns},
                                                       {"contextProperties", r->properties}}}}));
  });
}

void conversations(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  const AccountId& acc = p.user.account;
  if (req.method == "DELETE" && req.path.size() == 3 && req.path[2] == "content")
    return eraseContent(d, p, ConversationId(req.path[1]), done);
  if (req.method != "GET")
    return done(errorResponse(ErrorCode::kNotFound,
                              "conversations are read-only over REST (but for DELETE "
                              "conversations/{id}/content, the erasure of a closed one); change "
                              "them over the messaging protocol"));
  if (req.path.size() == 1) {
    store::ConversationQuery q;
    if (auto it = req.query.find("state"); it != req.query.end() && !it->second.empty()) {
      auto s = store::parseConversationState(it->second);
      if (!s) return done(errorResponse(ErrorCode::kInvalid, "state must be OPEN or CLOSE"));
      q.state = *s;
    }
    if (auto it = req.query.find("skill"); it != req.query.end() && !it->second.empty())
      q.skill = SkillId(it->second);
    if (auto it = req.query.find("consumer"); it != req.query.end() && !it->second.empty())
      q.consumer = ConsumerId(it->second);
    if (auto it = req.query.find("limit"); it != req.query.end()) {
      try {
        q.limit = std::clamp(std::stoi(it->second), 1, 5000);
      } catch (...) {
        return done(errorResponse(ErrorCode::kInvalid, "limit must be a number"));
      }
    }
    if (!allowed(p, policy::Action::kConversationsList, done)) return;
    // Without conversations.read.any the list holds only the conversations the caller may read.
    const bool all = policy::may(p.caller().subject(), policy::Action::kReadAnyConversation);
    return d.service.listConversations(
        acc, q, [&d, p, all, done](Result<std::vector<store::Conversation>> r) {
          if (!r) return done(errorResponse(r.error()));
          bj::array arr;
          for (const auto& c : *r)
            if (all || visibleTo(c, p.user, d.service)) arr.emplace_back(conversationObject(c));
          done(jsonResponse(arr));
        });
  }
  ConversationId id(req.path[1]);
  if (req.path.size() == 2) {
    if (!allowed(p, policy::Action::kConversationsGet, done)) return;
    return d.service.getConversation(acc, id, [&d, p, done](Result<store::Conversation> r) {
      if (!r) return done(errorResponse(r.error()));
      if (auto st = authorizeRead(p.caller().subject(), p.user, *r, d.service); !st)
        return done(errorResponse(st.error()));
      // "owner": the node holding the conversation's lease (cluster mode), null when none does.
      // "sdes" / "unAuthSdes": its engagement attributes as the Messaging Interactions API
      // shows them (store/engagement_attributes.h).
      d.blocking.run([&d, c = std::move(*r), done] {
        bj::object o = conversationObject(c);
        auto reported = store::reportedSdeEvents(d.store.functions(), c.account, c.id);
        if (!reported) return done(errorResponse(reported.error()));
        o["sdes"] = bj::object{{"events", std::move(*reported)}};
        o["unAuthSdes"] =
            bj::object{{"events", store::contextSdeEvents(c.context_json, c.start_ts)}};
        o["owner"] = nullptr;
        if (store::ClusterStore* cluster = d.store.cluster()) {
          auto lease = cluster->getLease(c.id);
          if (lease && lease->expires_at > d.clock.nowMs()) o["owner"] = lease->node;
        }
        done(jsonResponse(o));
      });
    });
  }
  if (req.path.size() == 3 && req.path[2] == "messages") {
    std::int64_t from = 0;
    int limit = 1000;
    try {
      if (auto it = req.query.find("fromSeq"); it != req.query.end()) from = std::stoll(it->second);
      if (auto it = req.query.find("limit"); it != req.query.end())
        limit = std::clamp(std::stoi(it->second), 1, 10000);
    } catch (...) {
      return done(errorResponse(ErrorCode::kInvalid, "fromSeq and limit must be numbers"));
    }
    if (!allowed(p, policy::Action::kConversationsMessages, done)) return;
    // Account isolation: getConversation first (listMessages is keyed by conversation only).
    return d.service.getConversation(acc, id, [&d, p, acc, id, from, limit, done](auto r) {
      if (!r) return done(errorResponse(r.error()));
      if (auto st = authorizeRead(p.caller().subject(), p.user, *r, d.service); !st)
        return done(errorResponse(st.error()));
      d.service.listMessages(acc, id, from, limit, [done](Result<std::vector<store::Message>> m) {
        if (!m) return done(errorResponse(m.error()));
        bj::array arr;
        for (const auto& x : *m) arr.emplace_back(messageObject(x));
        done(jsonResponse(arr));
      });
    });
  }
  done(errorResponse(ErrorCode::kNotFound,
                     "no such route; use conversations, conversations/{id} or "
                     "conversations/{id}/messages"));
}

}  // namespace

bool isCoreResource(const std::string& first) {
  return first == "skills" || first == "users" || first == "conversations" || first == "apikeys" ||
         first == "apps" || first == "me";
}

api::Response jsonResponse(const bj::value& v, int status) {
  return api::Response{status, bj::serialize(v)};
}

api::Response errorResponse(const Error& e) {
  bj::object o{{"error", bj::object{{"code", errorCodeName(e.code)}, {"message", e.message}}}};
  return api::Response{httpStatus(e.code), bj::serialize(o)};
}

api::Response errorResponse(ErrorCode code, std::string message) {
  return errorResponse(Error{code, std::move(message)});
}

std::string userJson(const store::User& u) { return bj::serialize(userObject(u)); }
std::string conversationJson(const store::Conversation& c) {
  return bj::serialize(conversationObject(c));
}

Result<std::vector<store::Role>> parseRoleNames(const bj::object& o, std::string_view field) {
  std::vector<store::Role> roles;
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return roles;
  if (!it->value().is_array())
    return invalid(fmt::format("{} must be an array of role names", field));
  for (const auto& v : it->value().as_array()) {
    if (!v.is_string()) return invalid(fmt::format("{} must be an array of role names", field));
    // Stored and answered as the constant.
    auto r = store::parseRole(std::string(v.as_string()));
    if (!r) return std::unexpected(r.error());
    if (std::ranges::find(roles, *r) == roles.end()) roles.push_back(*r);
  }
  return roles;
}

void handleCoreRest(RestDeps& deps, const Principal& principal, api::Request req, Done done) {
  const std::string& first = req.path.at(0);
  if (first == "conversations") return conversations(deps, principal, req, done);
  deps.blocking.run([&deps, principal, req = std::move(req), done = std::move(done)] {
    const std::string& f = req.path.at(0);
    if (f == "skills") return skills(deps, principal, req, done);
    if (f == "users") return users(deps, principal, req, done);
    if (f == "me" && req.method == "GET") {
      if (!allowed(principal, policy::Action::kMeGet, done)) return;
      return done(jsonResponse(userObject(principal.user)));
    }
    if (f == "apikeys") return apiKeys(deps, principal, req, done);
    if (f == "apps") return apps(deps, principal, req, done);
    done(errorResponse(ErrorCode::kNotFound, fmt::format("no route {} {}", req.method, f)));
  });
}

}  // namespace parley::server
