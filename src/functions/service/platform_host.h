#pragma once

// The production FunctionHost: what running functions reach through the Toolbelt. Secrets are
// read from the store and decrypted with the SecretBox; the allowlist comes from the store; the
// context service keeps namespaces and properties in the store's context properties (with TTL);
// conversations are read through a function supplied by main. Thread-safe. Owned by main; the
// store must outlive it. Every method blocks on the store: the runtime calls it only on its own
// host-call threads.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/thread_annotations.h"
#include "functions/host.h"
#include "store/store.h"

namespace parley::functions::service {

// Reads a conversation as the Messaging Interactions API returns it (JSON text), or NotFound.
using ConversationReader = std::function<Result<std::string>(const AccountId& account,
                                                             const std::string& conversation_id)>;

// What Toolbelt.SDEUtil().addSDEs and GDPRUtil().replaceConversationFiles need to know of a
// conversation of the account.
struct ConversationFacts {
  std::string consumer_id;
  std::string context_json = "{}";  // its conversationContext (visitor ids, SDEs)
  // The relativePath of each hosted file (ContentEvent `hosted/file`) its messages refer to.
  std::vector<std::string> files;
};
// Reads those facts of a conversation of `account`, or NotFound (also for another account's).
using ConversationFactsReader = std::function<Result<ConversationFacts>(
    const AccountId& account, const std::string& conversation_id)>;

// One HTTP request for the server's own router, made for Toolbelt.LpClient (see
// functions/lp_services.h), and its answer.
struct LocalApiRequest {
  std::string method;
  std::string target;  // "/api/v1/accounts/{acc}/skills?…"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The client address the server sees (its per-address login throttle). Default: "".
  std::string remote_address;
};
struct LocalApiResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};
// Hands a request to the server's router, which authenticates and authorises it as any REST
// call, and blocks until it answers (or fails with Timeout). Supplied by main.
using LocalApi = std::function<Result<LocalApiResponse>(LocalApiRequest)>;

// Secret audit entries kept per account (the newest; older ones are deleted as new ones come).
inline constexpr int kDefaultSecretAuditKeep = 10'000;

class PlatformHost final : public FunctionHost {
 public:
  // `read_conversation` may be empty: then getConversation fails with Unavailable.
  PlatformHost(store::FunctionStore& store, crypto::SecretBox box, const Clock& clock,
               ConversationReader read_conversation = {},
               int secret_audit_keep = kDefaultSecretAuditKeep);

  // FunctionHost
  Result<std::string> readSecret(const AccountId& account, const std::string& key) override;
  Status updateSecret(const AccountId& account, const std::string& key,
                      const std::string& value) override;
  // Appends to the store's secret audit (FunctionStore::appendSecretAudit), keeping the newest
  // `secret_audit_keep` entries of the account.
  Status recordSecretAccess(const SecretAccess& access) override;
  Result<std::vector<std::string>> allowlist(const AccountId& account) override;
  Result<std::string> contextCall(const AccountId& account, const std::string& op,
                                  const std::string& args_json) override;
  Result<std::string> getConversation(const AccountId& account,
                                      const std::string& conversation_id) override;
  // "lp": checks the request (checkLpRequest), reads the app-key secret (recorded in the secret
  // audit like a SecretClient read), and hands the request to the LocalApi with
  // `Authorization: Bearer <api key>`. Unavailable until setLocalApi.
  // "sdes.add" {sdes, visitorId, sessionId} -> null: Toolbelt.SDEUtil().addSDEs. sessionId is a
  // conversation of the call's account (NotFound otherwise), visitorId its consumer id or the
  // `visitorId`/`sharkVisitorId` of its conversationContext (top level or under `visitor`);
  // the SDEs are checked and stored (store/engagement_attributes.h). Unavailable until
  // setConversationFacts.
  // "gdpr.replaceFiles" {conversationId, username, password, paths[]} -> [paths replaced]:
  // Toolbelt.GDPRUtil().replaceConversationFiles. Logs in as that user of the account through
  // the LocalApi (the server's login: password check and login throttle, client address
  // "function:<account>"), requires the ADMIN role, logs out again; then every path must be a
  // hosted file of the conversation. Parley keeps no file storage, so no file can be replaced:
  // selected paths are refused with Unavailable saying so; none selected answers [].
  Result<std::string> platformCall(const PlatformCall& call) override;

  // Where LpClient requests go (the server exists only after the runtime). Thread-safe; call
  // before the server serves; the LocalApi must stay callable until the runtime is destroyed.
  void setLocalApi(LocalApi api);
  // What "sdes.add" and "gdpr.replaceFiles" read conversations with. Thread-safe; call before
  // the runtime invokes functions.
  void setConversationFacts(ConversationFactsReader read);

 private:
  Result<std::string> lpCall(const PlatformCall& call);
  Result<std::string> addSdesCall(const PlatformCall& call);
  Result<std::string> replaceFilesCall(const PlatformCall& call);
  std::shared_ptr<const LocalApi> localApi();
  std::shared_ptr<const ConversationFactsReader> factsReader();

  store::FunctionStore& store_;
  const crypto::SecretBox box_;
  const Clock& clock_;
  ConversationReader read_conversation_;
  const int secret_audit_keep_;
  Mutex local_api_mu_;
  std::shared_ptr<const LocalApi> local_api_ PARLEY_GUARDED_BY(local_api_mu_);
  std::shared_ptr<const ConversationFactsReader> facts_ PARLEY_GUARDED_BY(local_api_mu_);
};

// The context-service session used when a call gives no sessionId.
inline constexpr std::string_view kDefaultContextSession = "__default";

}  // namespace parley::functions::service
