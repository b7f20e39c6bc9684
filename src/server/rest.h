#pragma once

// REST v1 resources that the server owns itself: skills, users, conversations, apikeys, apps,
// me.
// Every other resource is forwarded to a registered api::Handler (see http_app.h).
// Thread-safe; store work runs on the blocking executor, engine work through the async
// ConversationService. `done` is called exactly once on any thread.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "conversation/conversation_service.h"
#include "server/auth.h"
#include "server/http_types.h"
#include "server/oauth.h"
#include "server/protocol/directory.h"
#include "store/store.h"

namespace parley::server {

struct RestDeps {
  store::Store& store;
  conversation::ConversationService& service;
  protocol::Directory& directory;
  Auth& auth;
  // The functions gateway's OAuth 2.0 apps (REST `apps`) and token endpoint.
  OAuth& oauth;
  BlockingExecutor& blocking;
  const Clock& clock;
  // Cost of password hashes for users created over REST. Default: interactive.
  crypto::PasswordCost password_cost = crypto::PasswordCost::kInteractive;
};

// The first path segments the core owns.
bool isCoreResource(const std::string& first_segment);

// The array of role names in `o[field]` (either spelling: "AGENT_MANAGER" or "Agent Manager"),
// without duplicates; empty when the field is absent or null. Invalid, naming the field or the
// unknown role, otherwise.
Result<std::vector<store::Role>> parseRoleNames(const boost::json::object& o,
                                                std::string_view field);

// Handles a core REST request for `principal` (already checked to belong to req.caller.account).
void handleCoreRest(RestDeps& deps, const Principal& principal, api::Request req,
                    std::function<void(api::Response)> done);

// {"error":{"code":..,"message":..}} with the fitting status.
// A JSON body with the given status (200 by default).
api::Response jsonResponse(const boost::json::value& v, int status = 200);
api::Response errorResponse(const Error& e);
api::Response errorResponse(ErrorCode code, std::string message);

// JSON shapes (exposed for tests and the console).
std::string userJson(const store::User& u);
std::string conversationJson(const store::Conversation& c);

}  // namespace parley::server
