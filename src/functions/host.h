#pragma once

// What the function runtime needs from the rest of the platform: secrets, the domain
// allowlist, the context service and conversations. Implemented by the functions platform
// service (src/functions/service/); testing/fake_host.h is the in-memory fake.

#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "functions/runner.h"

namespace parley::functions {

enum class SecretOp { kRead, kWrite };
// Whether the runtime let the operation through (kAllowed, even if it then failed, e.g. an
// unknown key) or refused it for the invoker (kRefused).
enum class SecretOutcome { kAllowed, kRefused };

// One secret read or write attempted by a function, for the audit trail.
struct SecretAccess {
  AccountId account;
  FunctionId function;
  std::string request_id;
  Invoker invoker;
  std::string key;
  SecretOp op = SecretOp::kRead;
  SecretOutcome outcome = SecretOutcome::kAllowed;
  // Why it was refused, or the error of an allowed operation that failed; empty on success.
  std::string detail;
  TimeMs ts = 0;
};

// One call of a Toolbelt client that acts on the platform itself rather than on a store the
// host keeps (LpClient, SDEUtil.addSDEs, GDPRUtil). Made by the runtime from the invocation it
// belongs to.
struct PlatformCall {
  AccountId account;
  FunctionId function;
  std::string request_id;
  Invoker invoker;
  std::string op;
  // A JSON object, from the function: untrusted.
  std::string args_json;
};

// The platform services a running function may reach through the Toolbelt. Thread-safe; every
// method may block (it may do I/O): the runtime calls it only on its own host-call threads,
// never on a V8 worker. Owned by main; must outlive the FunctionRuntime that uses it.
class FunctionHost {
 public:
  virtual ~FunctionHost() = default;

  // The latest value of secret `key` of the account. NotFound when there is no such secret.
  virtual Result<std::string> readSecret(const AccountId& account, const std::string& key) = 0;
  // Replaces the value of an existing secret. NotFound when it does not exist (functions cannot
  // create secrets); Invalid when the value breaks the secret rules (at most 10,000 chars).
  virtual Status updateSecret(const AccountId& account, const std::string& key,
                              const std::string& value) = 0;
  // Records one secret access (audit). The runtime calls it for every read and write a function
  // attempts, after the operation and before the function sees its result; when it fails, a
  // read's value is withheld from the function.
  virtual Status recordSecretAccess(const SecretAccess& access) = 0;
  // The account's outbound domain allowlist, e.g. {"api.example.com", "*.example.org"}.
  virtual Result<std::vector<std::string>> allowlist(const AccountId& account) = 0;
  // One context-service (§4.10) operation. `op` is one of: createNamespace, deleteNamespace,
  // getListOfNamespaces, set, update, getAll, getSelected, get, deleteProperty, deleteSession,
  // getListOfSessions. `args_json` is an object:
  //   createNamespace  {"namespace", "ttl"?}            -> {"name","createdAt","ttlSecond"?}
  //   deleteNamespace  {"namespace"}                    -> null
  //   getListOfNamespaces {}                            -> [{"name","createdAt","ttlSecond"?}]
  //   set / update     {"namespace","properties":{..},"sessionId"?} -> null
  //   getAll           {"namespace","sessionId"?}       -> {name: value, ...}
  //   getSelected      {"namespace","names":[..],"sessionId"?} -> {name: value, ...}
  //   get              {"namespace","name","sessionId"?} -> value (null when absent)
  //   deleteProperty   {"namespace","name","sessionId"?} -> null
  //   deleteSession    {"namespace","sessionId"}        -> null
  //   getListOfSessions {"namespace"}                   -> ["sessionId", ...]
  // Returns the JSON text of the result. NotFound for an unknown namespace, Invalid for bad args.
  virtual Result<std::string> contextCall(const AccountId& account, const std::string& op,
                                          const std::string& args_json) = 0;
  // The conversation as the Messaging Interactions API returns it (JSON text), or NotFound.
  virtual Result<std::string> getConversation(const AccountId& account,
                                              const std::string& conversation_id) = 0;
  // A platform call (see PlatformCall). `op`:
  //   lp  {"service","method","path","headers":{..},"body","appKeySecretName"}
  //       -> {"statusCode","headers":{..},"body"}: Toolbelt.LpClient; functions/lp_services.h
  //          says which service names reach which of Parley's REST resources.
  //   sdes.add  {"sdes":[..],"visitorId","sessionId"} -> null: Toolbelt.SDEUtil().addSDEs.
  //   gdpr.replaceFiles {"conversationId","username","password","paths":[..]} -> [paths]:
  //          Toolbelt.GDPRUtil().replaceConversationFiles.
  //   (service/platform_host.h says what the server does for each.)
  // Returns the JSON text of the result; an error whose message says what was refused and why.
  virtual Result<std::string> platformCall(const PlatformCall& call) = 0;
};

}  // namespace parley::functions
