#pragma once

// REST `apps`: the OAuth 2.0 app installations of the functions gateway (oauth.h), ADMIN only
// (docs/authorization.md, `apps.*`).
//   GET    apps              [{clientId, name, scopes[], createdAt, createdBy}] (never a secret)
//   POST   apps {name, scopes[]}  201 with `clientSecret`, shown this once
//   DELETE apps/{clientId}   the app and every access token issued to it
// Blocking (store): runs on the blocking executor like the other core resources.

#include <functional>

#include "common/api.h"
#include "server/auth.h"
#include "server/rest.h"

namespace parley::server {

void apps(RestDeps& deps, const Principal& principal, const api::Request& req,
          const std::function<void(api::Response)>& done);

}  // namespace parley::server
