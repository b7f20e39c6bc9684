#include "store/sqlite/function_store.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "store/sqlite/query.h"
#include "store/sqlite/rows.h"

namespace parley::store::sqlite {
namespace {

std::string functionNameMessage(const FunctionRecord& f) {
  return "function name '" + f.name + "' is taken in account " + f.account.str();
}

std::string functionMissing(const AccountId& acc, const FunctionId& id) {
  return "function " + id.str() + " does not exist in account " + acc.str();
}

}  // namespace

Status SqliteFunctionStore::createFunction(const FunctionRecord& f) {
  if (f.uuid.empty()) return invalid("function uuid is required");
  if (f.account.empty()) return invalid("function account is required");
  if (f.name.empty()) return invalid("function name is required");
  FunctionRecord stored = f;
  if (stored.created_at == 0) stored.created_at = db_.now();
  if (stored.updated_at == 0) stored.updated_at = stored.created_at;
  return db_.write([&](Conn& c) -> Status {
    auto dup = exists(c, "SELECT 1 FROM functions WHERE uuid=?", f.uuid.str());
    if (!dup) return asStatus(dup);
    if (*dup) return conflict("function " + f.uuid.str() + " already exists");
    return conflictAs(
        asStatus(execute(
            c,
            "INSERT INTO functions(" + cols(kFunctionCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            stored.uuid.str(), stored.account.str(), stored.name, stored.description,
            stored.event_id, stored.code, envJson(stored.env),
            std::string(functionStateName(stored.state)), stored.version, stored.created_by,
            stored.updated_by, stored.created_at, stored.updated_at)),
        functionNameMessage(f));
  });
}

Status SqliteFunctionStore::updateFunction(const FunctionRecord& f) {
  return db_.write([&](Conn& c) -> Status {
    auto n = execute(c,
                     "UPDATE functions SET name=?, description=?, event_id=?, code=?, "
                     "env_json=?, state=?, version=?, created_by=?, updated_by=?, "
                     "created_at=?, updated_at=? WHERE uuid=? AND account=?",
                     f.name, f.description, f.event_id, f.code, envJson(f.env),
                     std::string(functionStateName(f.state)), f.version, f.created_by, f.updated_by,
                     f.created_at, f.updated_at, f.uuid.str(), f.account.str());
    if (!n) return conflictAs(asStatus(n), functionNameMessage(f));
    if (*n == 0) return notFound(functionMissing(f.account, f.uuid));
    return {};
  });
}

Status SqliteFunctionStore::deleteFunction(const AccountId& acc, const FunctionId& id) {
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(changedOrNotFound(
        execute(c, "DELETE FROM functions WHERE uuid=? AND account=?", id.str(), acc.str()),
        functionMissing(acc, id)));
    PARLEY_STORE_TRY(execute(c, "DELETE FROM deployments WHERE account=? AND function_uuid=?",
                             acc.str(), id.str()));
    PARLEY_STORE_TRY(execute(c, "DELETE FROM schedules WHERE account=? AND function_uuid=?",
                             acc.str(), id.str()));
    return asStatus(execute(c, "DELETE FROM invocation_logs WHERE account=? AND function_uuid=?",
                            acc.str(), id.str()));
  });
}

Result<FunctionRecord> SqliteFunctionStore::getFunction(const AccountId& acc,
                                                        const FunctionId& id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<FunctionRecord>(
        c, "SELECT " + cols(kFunctionCols) + " FROM functions WHERE uuid=? AND account=?",
        functionRow, id.str(), acc.str());
  });
  return found(std::move(r), functionMissing(acc, id));
}

Result<std::vector<FunctionRecord>> SqliteFunctionStore::listFunctions(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<FunctionRecord>(
        c, "SELECT " + cols(kFunctionCols) + " FROM functions WHERE account=? ORDER BY name, uuid",
        functionRow, acc.str());
  });
}

Status SqliteFunctionStore::addDeployment(const Deployment& d) {
  if (d.uuid.empty()) return invalid("deployment uuid is required");
  const TimeMs created = d.created_at ? d.created_at : db_.now();
  return db_.write([&](Conn& c) {
    return conflictAs(
        asStatus(execute(
            c,
            "INSERT INTO deployments(" + cols(kDeploymentCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            d.uuid, d.function.str(), d.account.str(), d.function_version, d.code, envJson(d.env),
            std::string(deploymentStateName(d.state)), d.error_json, d.created_by, created,
            d.deployed_at)),
        "deployment " + d.uuid + " already exists");
  });
}

Result<std::vector<Deployment>> SqliteFunctionStore::listDeployments(const AccountId& acc,
                                                                     const FunctionId& id,
                                                                     int limit) {
  if (limit <= 0) return std::vector<Deployment>{};
  return db_.read([&](Conn& c) {
    return selectAll<Deployment>(c,
                                 "SELECT " + cols(kDeploymentCols) +
                                     " FROM deployments WHERE account=? AND function_uuid=? "
                                     "ORDER BY created_at DESC, seq DESC LIMIT ?",
                                 deploymentRow, acc.str(), id.str(), limit);
  });
}

Status SqliteFunctionStore::pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) {
  return db_.write([&](Conn& c) {
    return asStatus(
        execute(c,
                "DELETE FROM deployments WHERE account=?1 AND function_uuid=?2 AND seq NOT IN "
                "(SELECT seq FROM deployments WHERE account=?1 AND function_uuid=?2 "
                "ORDER BY created_at DESC, seq DESC LIMIT ?3)",
                acc.str(), id.str(), std::max(keep, 0)));
  });
}

Status SqliteFunctionStore::appendLogs(const std::vector<InvocationLog>& logs) {
  if (logs.empty()) return {};
  return db_.write([&](Conn& c) -> Status {
    for (const auto& l : logs)
      PARLEY_STORE_TRY(
          execute(c, "INSERT INTO invocation_logs(" + cols(kLogCols) + ") VALUES(?,?,?,?,?,?,?)",
                  l.function.str(), l.account.str(), l.request_id, l.ts, l.level, l.message,
                  l.extras_json));
    return {};
  });
}

Result<std::vector<InvocationLog>> SqliteFunctionStore::listLogs(const AccountId& acc,
                                                                 const FunctionId& id, TimeMs since,
                                                                 int limit) {
  if (limit <= 0) return std::vector<InvocationLog>{};
  return db_.read([&](Conn& c) {
    return selectAll<InvocationLog>(
        c,
        "SELECT " + cols(kLogCols) +
            " FROM invocation_logs WHERE account=? AND function_uuid=? AND ts>=? "
            "ORDER BY ts DESC, seq DESC LIMIT ?",
        logRow, acc.str(), id.str(), since, limit);
  });
}

Status SqliteFunctionStore::putSecret(const Secret& s) {
  if (s.key.empty()) return invalid("secret key is required");
  const TimeMs updated = s.updated_at ? s.updated_at : db_.now();
  return db_.write([&](Conn& c) {
    return asStatus(
        execute(c, "INSERT OR REPLACE INTO secrets(" + cols(kSecretCols) + ") VALUES(?,?,?,?)",
                s.account.str(), s.key, Blob{s.ciphertext}, updated));
  });
}

Result<Secret> SqliteFunctionStore::getSecret(const AccountId& acc, const std::string& key) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<Secret>(
        c, "SELECT " + cols(kSecretCols) + " FROM secrets WHERE account=? AND key_name=?",
        secretRow, acc.str(), key);
  });
  return found(std::move(r), "secret '" + key + "' does not exist in account " + acc.str());
}

Status SqliteFunctionStore::deleteSecret(const AccountId& acc, const std::string& key) {
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c, "DELETE FROM secrets WHERE account=? AND key_name=?", acc.str(), key),
        "secret '" + key + "' does not exist in account " + acc.str());
  });
}

Result<std::vector<std::string>> SqliteFunctionStore::listSecretKeys(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<std::string>(
        c, "SELECT key_name FROM secrets WHERE account=? ORDER BY key_name", textColumn, acc.str());
  });
}

Status SqliteFunctionStore::appendSecretAudit(const SecretAuditEntry& e, int keep) {
  if (e.account.empty()) return invalid("account id is required");
  const TimeMs ts = e.ts ? e.ts : db_.now();
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(execute(
        c, "INSERT INTO secret_audit(" + cols(kSecretAuditCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)",
        e.account.str(), ts, e.function.str(), e.request_id,
        std::string(auditInvokerName(e.invoker)), e.user.str(), e.login_name, e.key,
        std::string(auditOpName(e.op)), std::string(auditOutcomeName(e.outcome)), e.detail));
    return asStatus(execute(c,
                            "DELETE FROM secret_audit WHERE account=?1 AND seq <= "
                            "(SELECT seq FROM secret_audit WHERE account=?1 "
                            "ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                            e.account.str(), std::max(keep, 0)));
  });
}

Result<std::vector<SecretAuditEntry>> SqliteFunctionStore::listSecretAudit(const AccountId& acc,
                                                                           int limit) {
  if (limit <= 0) return std::vector<SecretAuditEntry>{};
  return db_.read([&](Conn& c) {
    return selectAll<SecretAuditEntry>(c,
                                       "SELECT " + cols(kSecretAuditCols) +
                                           " FROM secret_audit WHERE account=? "
                                           "ORDER BY seq DESC LIMIT ?",
                                       secretAuditRow, acc.str(), limit);
  });
}

Status SqliteFunctionStore::putAllowlist(const AccountId& acc,
                                         const std::vector<std::string>& domains) {
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(execute(c, "DELETE FROM allowlist WHERE account=?", acc.str()));
    std::int64_t pos = 0;
    for (const auto& d : domains)
      PARLEY_STORE_TRY(execute(c, "INSERT INTO allowlist(account, position, domain) VALUES(?,?,?)",
                               acc.str(), pos++, d));
    return {};
  });
}

Result<std::vector<std::string>> SqliteFunctionStore::getAllowlist(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<std::string>(
        c, "SELECT domain FROM allowlist WHERE account=? ORDER BY position", textColumn, acc.str());
  });
}

Status SqliteFunctionStore::putContextProperty(const ContextProperty& p) {
  if (p.ns.empty()) return invalid("context namespace is required");
  if (p.name.empty()) return invalid("context property name is required");
  return db_.write([&](Conn& c) {
    return asStatus(execute(
        c,
        "INSERT OR REPLACE INTO context_properties(" + cols(kContextCols) + ") VALUES(?,?,?,?,?,?)",
        p.account.str(), p.ns, p.session_id, p.name, p.value_json, p.expires_at));
  });
}

Result<std::vector<ContextProperty>> SqliteFunctionStore::listContextProperties(
    const AccountId& acc, const std::string& ns, const std::string& session) {
  const TimeMs now = db_.now();
  return db_.read([&](Conn& c) {
    return selectAll<ContextProperty>(c,
                                      "SELECT " + cols(kContextCols) +
                                          " FROM context_properties WHERE account=? AND ns=? AND "
                                          "session_id=? AND (expires_at=0 OR expires_at>?) "
                                          "ORDER BY name",
                                      contextRow, acc.str(), ns, session, now);
  });
}

Status SqliteFunctionStore::deleteContextProperties(const AccountId& acc, const std::string& ns,
                                                    const std::string& session,
                                                    const std::string& name) {
  return db_.write([&](Conn& c) {
    return asStatus(execute(c,
                            "DELETE FROM context_properties WHERE account=?1 AND ns=?2 AND "
                            "session_id=?3 AND (?4='' OR name=?4)",
                            acc.str(), ns, session, name));
  });
}

}  // namespace parley::store::sqlite
