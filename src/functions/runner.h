#pragma once

// The only header of src/functions that other subsystems include. It runs deployed functions.

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"

namespace parley::functions {

struct LogEntry {
  std::string level;  // Debug, Info, Warn, Error
  std::string message;
  std::string extras_json = "[]";
  TimeMs ts = 0;
};

// Who started an invocation: the platform (a bot turn, a production invocation) or a user (a
// test invoke from the console or REST).
enum class InvokerKind { kPlatform, kUser };
// Whether the invocation may change secret values through SecretClient.updateSecret.
enum class SecretWrites { kRefused, kAllowed };

// The invoker travels with the invocation: the runtime refuses secret writes unless they are
// allowed, and records it with every secret the function reads or writes.
struct Invoker {
  InvokerKind kind = InvokerKind::kPlatform;
  UserId user;             // kUser: the user who invoked
  std::string login_name;  // kUser
  // Refused unless the caller decides otherwise: the functions service allows it for
  // production invocations (the platform) and for test invokes by FAAS_ADMIN or ADMIN.
  SecretWrites secret_writes = SecretWrites::kRefused;
};

// The input envelope every function receives: {"timestamp":..,"headers":[],"payload":..}, with
// `payload_json` (serialised JSON) spliced in unchanged.
inline std::string invocationInput(TimeMs timestamp_ms, std::string_view payload_json) {
  std::string s = R"({"timestamp":)";
  s += std::to_string(timestamp_ms);
  s += R"(,"headers":[],"payload":)";
  s += payload_json;
  s += '}';
  return s;
}

// One invocation. Built with the named steps, e.g.
//   runner.invoke(InvokeRequest::of(acc, fn).withPayload(now, payload).within(limit)
//                     .withRequestId(turn_id), done);
struct InvokeRequest {
  AccountId account;
  FunctionId function;
  // The whole invocation input: {"timestamp":..,"headers":[{key,value}],"payload":..}.
  std::string input_json;
  // Wall-clock budget. Default: the platform limit (30 s).
  std::chrono::milliseconds deadline{30'000};
  // Correlates logs; generated when empty.
  std::string request_id;
  Invoker invoker;

  static InvokeRequest of(AccountId account, FunctionId function) {
    InvokeRequest r;
    r.account = std::move(account);
    r.function = std::move(function);
    return r;
  }
  // The whole input, already an envelope.
  InvokeRequest&& withInput(std::string input) && {
    input_json = std::move(input);
    return std::move(*this);
  }
  // The envelope around a serialised payload (see invocationInput).
  InvokeRequest&& withPayload(TimeMs timestamp_ms, std::string_view payload_json) && {
    input_json = invocationInput(timestamp_ms, payload_json);
    return std::move(*this);
  }
  InvokeRequest&& within(std::chrono::milliseconds budget) && {
    deadline = budget;
    return std::move(*this);
  }
  InvokeRequest&& withRequestId(std::string id) && {
    request_id = std::move(id);
    return std::move(*this);
  }
  InvokeRequest&& by(Invoker who) && {
    invoker = std::move(who);
    return std::move(*this);
  }
};

struct InvokeResult {
  bool ok = false;
  // The value passed to callback(null, result), serialised; valid when ok.
  std::string result_json;
  // LivePerson error code when !ok, e.g. "com.liveperson.faas.handler.custom-failure",
  // "com.liveperson.faas.handler.executiontime-exceeded", "com.liveperson.faas.es.notdeployed".
  std::string error_code;
  std::string error_message;
  std::vector<LogEntry> logs;
  double duration_ms = 0;
  // CPU time the function's JavaScript used (thread CPU clock of its worker), over all its
  // turns (the call, timers, Toolbelt replies).
  double cpu_ms = 0;
};

// Runs invocations of deployed functions on the functions executor (worker threads owning V8
// isolates). Thread-safe. Owned by main; outlives its users.
class Runner {
 public:
  virtual ~Runner() = default;
  // Queues an invocation. `done` is called exactly once, on a functions worker thread (or
  // inline when the request is rejected at once); callers post the result to their own strand.
  virtual void invoke(InvokeRequest request, std::function<void(InvokeResult)> done) = 0;
};

}  // namespace parley::functions
