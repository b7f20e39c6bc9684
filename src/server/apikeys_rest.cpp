#include "server/apikeys_rest.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "common/json.h"
#include "common/names.h"

namespace parley::server {
namespace {

namespace bj = boost::json;
using Done = std::function<void(api::Response)>;

bool isAdmin(const Principal& p) { return p.caller().hasRole("ADMIN"); }

bj::object keyObject(const store::ApiKey& k, TimeMs now) {
  bj::array scopes;
  for (auto r : k.scopes) scopes.emplace_back(store::roleName(r));
  bj::object o{{"id", k.id},
               {"name", k.name},
               {"userId", k.user.str()},
               {"scopes", std::move(scopes)},
               {"createdAt", k.created_at},
               {"createdBy", k.created_by.str()},
               {"expired", k.expires_at != 0 && k.expires_at <= now}};
  o["expiresAt"] = k.expires_at == 0 ? bj::value(nullptr) : bj::value(k.expires_at);
  return o;
}

Result<std::vector<store::Role>> parseScopes(const bj::object& o) {
  auto scopes = parseRoleNames(o, "scopes");
  if (scopes && scopes->empty() && o.contains("scopes") && !o.at("scopes").is_null())
    return invalid("scopes, when given, must name at least one role");
  return scopes;
}

void list(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  std::string user_filter;
  if (auto it = req.query.find("userId"); it != req.query.end()) user_filter = it->second;
  if (!isAdmin(p)) {
    if (!user_filter.empty() && user_filter != p.user.id.str())
      return done(errorResponse(ErrorCode::kForbidden,
                                "only an ADMIN may list the API keys of another user"));
    user_filter = p.user.id.str();
  }
  auto keys = d.store.accounts().listApiKeys(p.user.account);
  if (!keys) return done(errorResponse(keys.error()));
  const TimeMs now = d.clock.nowMs();
  bj::array arr;
  for (const auto& k : *keys)
    if (user_filter.empty() || k.user.str() == user_filter) arr.emplace_back(keyObject(k, now));
  done(jsonResponse(arr));
}

void create(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  if (!body) return done(errorResponse(body.error()));
  auto name = json::requireString(*body, "name");
  if (!name)
    return done(errorResponse(ErrorCode::kInvalid,
                              "name is required: a string that says what the key is for"));
  if (auto st = validateName("API key name", *name, 100); !st)
    return done(errorResponse(st.error()));
  ApiKeyRequest kr;
  kr.name = *name;
  auto scopes = parseScopes(*body);
  if (!scopes) return done(errorResponse(scopes.error()));
  kr.scopes = *scopes;
  if (auto it = body->find("expiresAt"); it != body->end() && !it->value().is_null()) {
    if (!it->value().is_int64() && !it->value().is_uint64())
      return done(errorResponse(ErrorCode::kInvalid,
                                "expiresAt must be a time in milliseconds since the epoch"));
    kr.expires_at = it->value().to_number<std::int64_t>();
  }
  store::User target = p.user;
  std::string user_id = json::getString(*body, "userId");
  if (!user_id.empty() && user_id != p.user.id.str()) {
    if (!isAdmin(p))
      return done(errorResponse(
          ErrorCode::kForbidden,
          "only an ADMIN may create an API key for another user; leave userId out for your own"));
    auto u = d.store.accounts().getUser(p.user.account, UserId(user_id));
    if (!u) return done(errorResponse(u.error()));
    target = std::move(*u);
  } else {
    // For yourself: the key may not act with more than this credential does (an API key with
    // scopes cannot mint a wider one).
    auto stored = d.store.accounts().getUser(p.user.account, p.user.id);
    if (!stored) return done(errorResponse(stored.error()));
    target = std::move(*stored);
    if (kr.scopes.empty() && p.credential == Credential::kApiKey) kr.scopes = p.user.roles;
    for (auto r : kr.scopes)
      if (std::find(p.user.roles.begin(), p.user.roles.end(), r) == p.user.roles.end())
        return done(errorResponse(
            ErrorCode::kForbidden,
            fmt::format("this credential does not act with the role {}; a new key can only "
                        "narrow what you have",
                        store::roleName(r))));
    if (kr.scopes.empty() && p.credential == Credential::kApiKey)
      return done(errorResponse(ErrorCode::kForbidden, "this API key has no roles to give"));
  }
  if (target.status == store::UserStatus::kDisabled)
    return done(
        errorResponse(ErrorCode::kInvalid,
                      fmt::format("user '{}' is disabled; enable it first", target.login_name)));
  auto created = d.auth.createApiKey(target, p.user.id, kr);
  if (!created) return done(errorResponse(created.error()));
  bj::object o = keyObject(created->record, d.clock.nowMs());
  o["key"] = created->key;
  done(jsonResponse(o, 201));
}

void remove(RestDeps& d, const Principal& p, const std::string& id, const Done& done) {
  auto keys = d.store.accounts().listApiKeys(p.user.account);
  if (!keys) return done(errorResponse(keys.error()));
  const store::ApiKey* found = nullptr;
  for (const auto& k : *keys)
    if (k.id == id) found = &k;
  if (!found)
    return done(errorResponse(ErrorCode::kNotFound,
                              fmt::format("no API key {} in account {}; GET apikeys lists them", id,
                                          p.user.account.str())));
  if (found->user != p.user.id && !isAdmin(p))
    return done(errorResponse(ErrorCode::kForbidden,
                              "only an ADMIN may revoke the API key of another user"));
  auto deleted = d.store.accounts().deleteApiKey(p.user.account, id);
  d.auth.credentialsChanged(p.user.account);  // the key stops at once, also where it is cached
  if (!deleted) return done(errorResponse(deleted.error()));
  done(jsonResponse(bj::object{{"deleted", id}}));
}

}  // namespace

void apiKeys(RestDeps& deps, const Principal& principal, const api::Request& req,
             const Done& done) {
  if (req.path.size() == 1 && req.method == "GET") return list(deps, principal, req, done);
  if (req.path.size() == 1 && req.method == "POST") return create(deps, principal, req, done);
  if (req.path.size() == 2 && req.method == "DELETE")
    return remove(deps, principal, req.path[1], done);
  done(errorResponse(ErrorCode::kNotFound,
                     fmt::format("no route {} apikeys/…; use GET/POST apikeys or DELETE "
                                 "apikeys/{{id}}",
                                 req.method)));
}

}  // namespace parley::server
