#include "server/apps_rest.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "common/json.h"
#include "common/policy.h"
#include "server/oauth.h"

namespace parley::server {
namespace {

namespace bj = boost::json;
using Done = std::function<void(api::Response)>;

// The public fields of an app: never its secret or the secret's hash.
bj::object appObject(const store::OAuthApp& a) {
  bj::array scopes;
  for (const auto& s : a.scopes) scopes.emplace_back(s);
  return bj::object{{"clientId", a.client_id},
                    {"name", a.name},
                    {"scopes", std::move(scopes)},
                    {"createdAt", a.created_at},
                    {"createdBy", a.created_by.str()}};
}

bool allowed(const Principal& p, policy::Action action, const Done& done) {
  auto st = policy::authorize(p.caller().subject(), action);
  if (st) return true;
  done(errorResponse(st.error()));
  return false;
}

void list(RestDeps& d, const Principal& p, const Done& done) {
  auto apps = d.oauth.listApps(p.user.account);
  if (!apps) return done(errorResponse(apps.error()));
  bj::array arr;
  for (const auto& a : *apps) arr.emplace_back(appObject(a));
  done(jsonResponse(arr));
}

void create(RestDeps& d, const Principal& p, const api::Request& req, const Done& done) {
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  if (!body) return done(errorResponse(body.error()));
  auto name = json::requireString(*body, "name");
  if (!name)
    return done(errorResponse(ErrorCode::kInvalid,
                              "name is required: a string that says which system the app is"));
  std::vector<std::string> scopes;
  auto it = body->find("scopes");
  if (it == body->end() || !it->value().is_array())
    return done(errorResponse(ErrorCode::kInvalid,
                              "scopes is required: an array of OAuth scopes, e.g. "
                              "[\"faas.lambda.invoke\"]"));
  for (const auto& v : it->value().as_array()) {
    if (!v.is_string())
      return done(errorResponse(ErrorCode::kInvalid, "scopes must be an array of strings"));
    scopes.emplace_back(v.as_string());
  }
  auto created = d.oauth.createApp(p.user.account, p.user.id, *name, scopes);
  if (!created) return done(errorResponse(created.error()));
  bj::object o = appObject(created->record);
  o["clientSecret"] = created->client_secret;
  done(jsonResponse(o, 201));
}

void remove(RestDeps& d, const Principal& p, const std::string& client_id, const Done& done) {
  auto st = d.oauth.deleteApp(p.user.account, client_id);
  if (!st) {
    if (st.error().code == ErrorCode::kNotFound)
      return done(errorResponse(ErrorCode::kNotFound,
                                fmt::format("no app {} in account {}; GET apps lists them",
                                            client_id, p.user.account.str())));
    return done(errorResponse(st.error()));
  }
  done(jsonResponse(bj::object{{"deleted", client_id}}));
}

}  // namespace

void apps(RestDeps& deps, const Principal& principal, const api::Request& req, const Done& done) {
  if (req.path.size() == 1 && req.method == "GET") {
    if (!allowed(principal, policy::Action::kAppsList, done)) return;
    return list(deps, principal, done);
  }
  if (req.path.size() == 1 && req.method == "POST") {
    if (!allowed(principal, policy::Action::kAppsCreate, done)) return;
    return create(deps, principal, req, done);
  }
  if (req.path.size() == 2 && req.method == "DELETE") {
    if (!allowed(principal, policy::Action::kAppsDelete, done)) return;
    return remove(deps, principal, req.path[1], done);
  }
  done(
      errorResponse(ErrorCode::kNotFound,
                    fmt::format("no route {} apps/…; use GET/POST apps or DELETE apps/{{clientId}}",
                                req.method)));
}

}  // namespace parley::server
