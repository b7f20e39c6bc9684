#pragma once

// The context service (FunctionHost::contextCall) held in memory, for runs without a store:
// `parley function invoke --local` and the runtime's tests. Namespaces hold sessions
// ("__default" when none is named), sessions hold properties. A namespace's ttl is accepted and
// not applied (a local run is short). Nothing is persisted. Thread-safe (one mutex).

#include <boost/json.hpp>
#include <map>
#include <string>

#include "common/result.h"
#include "common/thread_annotations.h"

namespace parley::functions {

class MemoryContext {
 public:
  // One operation as FunctionHost::contextCall documents it (same ops, arguments and results).
  // Invalid for bad arguments or an unknown operation, NotFound for an unknown namespace.
  Result<std::string> call(const std::string& op, const std::string& args_json)
      PARLEY_EXCLUDES(mu_);

 private:
  Mutex mu_;
  // namespace -> session id -> properties.
  std::map<std::string, std::map<std::string, boost::json::object>> namespaces_
      PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::functions
