#pragma once

// The production FunctionHost: what running functions reach through the Toolbelt. Secrets are
// read from the store and decrypted with the SecretBox; the allowlist comes from the store; the
// context service keeps namespaces and properties in the store's context properties (with TTL);
// conversations are read through a function supplied by main. Thread-safe. Owned by main; the
// store must outlive it. Every method blocks on the store: the runtime calls it only on its own
// host-call threads.

#include <functional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/crypto.h"
#include "functions/host.h"
#include "store/store.h"

namespace parley::functions::service {

// Reads a conversation as the Messaging Interactions API returns it (JSON text), or NotFound.
using ConversationReader = std::function<Result<std::string>(const AccountId& account,
                                                             const std::string& conversation_id)>;

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

 private:
  store::FunctionStore& store_;
  const crypto::SecretBox box_;
  const Clock& clock_;
  ConversationReader read_conversation_;
  const int secret_audit_keep_;
};

// The context-service session used when a call gives no sessionId.
inline constexpr std::string_view kDefaultContextSession = "__default";

}  // namespace parley::functions::service
