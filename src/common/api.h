#pragma once

// A transport-free REST handler contract. The server (src/server) owns HTTP, authentication and
// routing; subsystems that own a REST area (functions, bots, ...) implement ApiHandler and the
// server forwards matching requests to them. Only plain values cross this boundary.

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/policy.h"

namespace parley::api {

// The authenticated caller, resolved by the server from the bearer or API key.
struct Caller {
  AccountId account;
  UserId user;
  std::string login_name;
  // The user's roles (policy::Role; assignable from role names).
  policy::RoleSet roles;
  policy::UserType type = policy::UserType::kHuman;

  bool hasRole(policy::Role r) const { return roles.has(r); }
  // By name, either spelling ("AGENT_MANAGER" or "Agent Manager").
  bool hasRole(std::string_view name) const {
    auto r = policy::parseRole(name);
    return r && roles.has(*r);
  }
  policy::Subject subject() const { return policy::Subject{roles, type}; }
};

struct Request {
  std::string method;  // GET, POST, PUT, PATCH, DELETE
  // Path segments after /api/v1/accounts/{acc}/, e.g. {"functions","<uuid>","deploy"}.
  std::vector<std::string> path;
  std::map<std::string, std::string> query;
  std::string body;  // raw JSON text (may be empty)
  Caller caller;
};

struct Response {
  int status = 200;
  // JSON text. Errors use {"error":{"code":"<CODE>","message":"<what was wrong and what to do>"}}.
  std::string body = "{}";
  // Extra response headers (e.g. Retry-After); the functions gateway sets them.
  std::vector<std::pair<std::string, std::string>> headers{};
};

// Implemented by a subsystem that owns REST resources. Thread-safe. `done` is called exactly
// once, on any thread; the server posts it back to the connection's strand. Blocking work
// must run on the implementation's own executor, never on the calling (io) thread.
class Handler {
 public:
  virtual ~Handler() = default;
  // The first path segments this handler owns, e.g. {"functions","secrets","allowlist"}.
  virtual std::vector<std::string> resources() const = 0;
  virtual void handle(Request request, std::function<void(Response)> done) = 0;
};

}  // namespace parley::api
