#pragma once

// The SQLite FunctionStore: functions, deployments, logs, secrets, allowlist, context. Private to
// store/sqlite.

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Functions with their deployments and invocation logs, secrets and their audit, the outbound
// allowlist and context properties, on the shared Db. Thread-safe (see Db); owned by the
// SqliteStore.
class SqliteFunctionStore final : public FunctionStore {
 public:
  // REQUIRES: `db` outlives this.
  explicit SqliteFunctionStore(Db& db) : db_(db) {}

  // FunctionStore
  Status createFunction(const FunctionRecord& f) override;
  Status updateFunction(const FunctionRecord& f) override;
  Status deleteFunction(const AccountId& acc, const FunctionId& id) override;
  Result<FunctionRecord> getFunction(const AccountId& acc, const FunctionId& id) override;
  Result<std::vector<FunctionRecord>> listFunctions(const AccountId& acc) override;
  Status addDeployment(const Deployment& d) override;
  Result<std::vector<Deployment>> listDeployments(const AccountId& acc, const FunctionId& id,
                                                  int limit) override;
  Status pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) override;
  Status appendLogs(const std::vector<InvocationLog>& logs) override;
  Result<std::vector<InvocationLog>> listLogs(const AccountId& acc, const FunctionId& id,
                                              TimeMs since, int limit) override;
  Status putSecret(const Secret& s) override;
  Result<Secret> getSecret(const AccountId& acc, const std::string& key) override;
  Status deleteSecret(const AccountId& acc, const std::string& key) override;
  Result<std::vector<std::string>> listSecretKeys(const AccountId& acc) override;
  Status appendSecretAudit(const SecretAuditEntry& e, int keep) override;
  Result<std::vector<SecretAuditEntry>> listSecretAudit(const AccountId& acc, int limit) override;
  Status putAllowlist(const AccountId& acc, const std::vector<std::string>& domains) override;
  Result<std::vector<std::string>> getAllowlist(const AccountId& acc) override;
  Status putContextProperty(const ContextProperty& p) override;
  Result<std::vector<ContextProperty>> listContextProperties(const AccountId& acc,
                                                             const std::string& ns,
                                                             const std::string& session) override;
  Status deleteContextProperties(const AccountId& acc, const std::string& ns,
                                 const std::string& session, const std::string& name) override;

 private:
  Db& db_;
};

}  // namespace parley::store::sqlite
