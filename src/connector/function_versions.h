#pragma once

// Which code of a bot's function the conversation tester and replay run: the saved draft, the
// deployed version, or one of the kept deployments. Private to the connector.
//
// Threading: any thread but an engine or io thread (store reads).

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/result.h"
#include "functions/runner.h"
#include "store/store.h"

namespace parley::connector {

struct FunctionVersion {
  // "draft", "deployed", or "v<N>" (a kept deployment of version N).
  std::string label;
  // The function's version number of this code (FunctionRecord::version when it was saved).
  std::int64_t version = 0;
  // The deployment's uuid; "" for the draft.
  std::string deployment;
  std::string code;
  std::vector<store::EnvVar> env;

  // {"label", "version", "deploymentId"|null}
  boost::json::object toJson() const;
};

// Resolves `spec` for function `fn` of `acc`:
// - absent/null or "draft": the saved code (deployed or not), as a test invoke runs it;
// - "deployed": the code that runs in production (the newest Productive deployment of a
//   function whose state is Productive, Modified or Build Error); NotFound when the function
//   is not deployed;
// - a number N (or its decimal string, optionally "v"-prefixed): the newest Productive
//   deployment of version N among the kept ones, or the draft when N is the saved version;
// - a deployment uuid of the function.
// NotFound names the versions there are; Invalid for a spec of another type.
Result<FunctionVersion> resolveFunctionVersion(store::FunctionStore& functions,
                                               const AccountId& acc, const FunctionId& fn,
                                               const boost::json::value& spec);

// The invoker of a tester or replay invocation: the calling user; secret writes allowed only
// for ADMIN and FAAS_ADMIN, as in a test invoke.
functions::Invoker invokerOf(const api::Caller& caller);

// "MESSAGING" (also for null) or "CHAT", any case; Invalid otherwise.
Result<store::Channel> parseChannel(const boost::json::value& v);

}  // namespace parley::connector
