#pragma once

// The functions gateway (LivePerson's `faasGW`, bot-connector-spec §4.14): external invocation
// of deployed functions on their warm contexts, the same path the bot connector takes.
//
//   POST lambdas/{uuid}/invoke?v=1&externalSystem=<caller>      one function
//   POST events/{eventId}/invoke?v=1&externalSystem=<caller>    every deployed function of the
//   event GET  events/{eventId}/isImplemented?v=1&externalSystem=<caller>  {"implemented":bool}
//
// Paths are the segments after /api/account/{acc}/. The server authenticates the caller and asks
// the policy (Surface::kGateway) before handle() runs; the handler asks again. Answers are
// LivePerson's: the callback result as the body (200), or {"errorCode","errorMsg"} with the
// status of the table in the root README ("Functions gateway").
//
// The lambda invoke path does no store read and no JSON re-serialisation when the body is
// complete: the body is parsed once to check its shape and handed to the runtime as the
// invocation input; the worker's result text is the response body. The store is read only to
// tell an unknown function from an undeployed one (on the error path) and to list an event's
// functions.
//
// Ownership: main owns it (shared with the server); `runner`, `runtime`, `store` and `clock` must
// outlive it. Threading: thread-safe; handle() never blocks (store reads run on the gateway's
// own executor); `done` is called on a functions I/O thread or the executor. The destructor
// waits for invocations in flight.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "functions/runner.h"
#include "functions/runtime.h"
#include "functions/service/executor.h"
#include "store/store.h"

namespace parley::functions::service {

struct GatewayOptions {
  // Largest request body accepted (bytes); larger is 413. Default: 512 KiB (below the server's
  // own 1 MiB cap, so the gateway answers it in LivePerson's error format).
  std::size_t max_body_bytes = 512 * 1024;
  // Gateway invocations of one account running at once; more are refused with 429 and
  // Retry-After: 1 (LivePerson's per-account rate limit). Default: 256.
  std::size_t max_in_flight_per_account = 256;
  // Wall-clock budget of one invocation. Default: the platform limit, 30 s.
  std::chrono::milliseconds deadline{30'000};
  // Executor threads for store reads (unknown vs undeployed, event listings). Default: 1.
  std::size_t threads = 1;
};

// LivePerson error codes the gateway adds to the runtime's (runtime.h).
inline constexpr std::string_view kErrGatewayUnauthorized = "com.liveperson.faas.es.unauthorized";
inline constexpr std::string_view kErrGatewayForbidden = "com.liveperson.faas.es.forbidden";
inline constexpr std::string_view kErrGatewayGeneral = "com.liveperson.faas.es.general";
inline constexpr std::string_view kErrMissingLambda = "com.liveperson.faas.es.missinglambda";
inline constexpr std::string_view kErrRateLimited = "com.liveperson.faas.es.ratelimit";

// The HTTP status the gateway answers for a LivePerson error code (the root README's table).
int gatewayStatus(std::string_view error_code);
// {"errorCode":…,"errorMsg":…}
std::string gatewayErrorBody(std::string_view error_code, std::string_view message);

class Gateway final : public api::Handler {
 public:
  Gateway(Runner& runner, FunctionRuntime& runtime, store::FunctionStore& store, const Clock& clock,
          GatewayOptions options = {});
  ~Gateway() override;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // api::Handler
  // {"lambdas", "events"}: the first gateway path segments (not REST v1 resources).
  std::vector<std::string> resources() const override;
  void handle(api::Request request, std::function<void(api::Response)> done) override;

  const GatewayOptions& options() const { return options_; }

 private:
  struct Shared;

  void invokeLambda(api::Request& req, const FunctionId& id,
                    std::function<void(api::Response)> done);
  void invokeEvent(api::Request& req, const std::string& event_id,
                   std::function<void(api::Response)> done);
  void isImplemented(const api::Request& req, const std::string& event_id,
                     std::function<void(api::Response)> done);
  // The deployed functions of the account implementing `event_id`, by name (blocking).
  Result<std::vector<store::FunctionRecord>> deployedForEvent(const AccountId& acc,
                                                              const std::string& event_id);

  Runner& runner_;
  FunctionRuntime& runtime_;
  store::FunctionStore& store_;
  const Clock& clock_;
  const GatewayOptions options_;
  std::shared_ptr<Shared> shared_;
  // Last member: destroyed (drained and joined) first.
  std::unique_ptr<Executor> executor_;
};

}  // namespace parley::functions::service
