#pragma once

// REST `apikeys`: API keys for automation, listed, named, scoped, revocable, with an optional
// expiry; the key itself is shown once (only its hash is stored).
//   GET    apikeys[?userId=ID]  your keys; an ADMIN gets every key of the account (or of ID)
//   POST   apikeys {name, scopes?[role], expiresAt?(ms), userId?}  201 with `key`; a key for
//          another user (userId) only by an ADMIN; scopes must be roles of that user
//   DELETE apikeys/{id}          your own key, or any key of the account for an ADMIN
// Blocking (store): runs on the blocking executor like the other core resources.

#include <functional>

#include "common/api.h"
#include "server/auth.h"
#include "server/rest.h"

namespace parley::server {

void apiKeys(RestDeps& deps, const Principal& principal, const api::Request& req,
             const std::function<void(api::Response)>& done);

}  // namespace parley::server
