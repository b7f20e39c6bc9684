#pragma once

// The bridge from the functions platform's LpClient to the server's router
// (functions::service::LocalApi → server::Server::handleLocal). The server exists only after
// the function runtime and is destroyed before it, so the bridge holds it through a gate that
// main opens after the server is made and closes before it is destroyed; requests that come
// while it is closed fail with Unavailable. Thread-safe.

#include <chrono>
#include <memory>

#include "common/shared_mutex.h"
#include "functions/service/platform_host.h"
#include "server/server.h"

namespace parley::app {

// How long an LpClient request waits for the router's answer.
inline constexpr std::chrono::seconds kLocalApiTimeout{10};

class LocalApiGate {
 public:
  // A LocalApi for PlatformHost::setLocalApi; it shares this gate.
  static std::pair<std::shared_ptr<LocalApiGate>, functions::service::LocalApi> make();

  // Requests go to `server` (must live until close()).
  void open(server::Server& server) PARLEY_EXCLUDES(mu_);
  // Requests fail with Unavailable from now on; waits for dispatches in progress (not for their
  // answers, which the server delivers or drops).
  void close() PARLEY_EXCLUDES(mu_);

 private:
  SharedMutex mu_;
  server::Server* server_ PARLEY_GUARDED_BY(mu_) = nullptr;
};

}  // namespace parley::app
