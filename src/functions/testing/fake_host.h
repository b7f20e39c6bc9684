#pragma once

// An in-memory FunctionHost for tests. Thread-safe.

#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/thread_annotations.h"
#include "functions/host.h"

namespace parley::functions::testing {

class FakeHost final : public FunctionHost {
 public:
  void setSecret(const std::string& key, std::string value) {
    MutexLock lock(mu_);
    secrets_[key] = std::move(value);
  }
  std::string secretForTest(const std::string& key) {
    MutexLock lock(mu_);
    auto it = secrets_.find(key);
    return it == secrets_.end() ? std::string() : it->second;
  }
  void setAllowlist(std::vector<std::string> domains) {
    MutexLock lock(mu_);
    allowlist_ = std::move(domains);
  }
  void setConversation(const std::string& id, std::string json) {
    MutexLock lock(mu_);
    conversations_[id] = std::move(json);
  }
  int callsForTest() {
    MutexLock lock(mu_);
    return calls_;
  }
  // The secret accesses recorded so far, oldest first.
  std::vector<SecretAccess> secretAccessesForTest() {
    MutexLock lock(mu_);
    return accesses_;
  }
  // Makes every later recordSecretAccess fail (as a full disk would).
  void failAuditForTest() {
    MutexLock lock(mu_);
    fail_audit_ = true;
  }

  // FunctionHost (ignores the account: one account per fake)
  Result<std::string> readSecret(const AccountId&, const std::string& key) override {
    MutexLock lock(mu_);
    ++calls_;
    auto it = secrets_.find(key);
    if (it == secrets_.end()) return notFound("secret '" + key + "' does not exist");
    return it->second;
  }
  Status updateSecret(const AccountId&, const std::string& key, const std::string& value) override {
    MutexLock lock(mu_);
    ++calls_;
    auto it = secrets_.find(key);
    if (it == secrets_.end()) return notFound("secret '" + key + "' does not exist");
    if (value.size() > 10'000) return invalid("secret value is longer than 10,000 characters");
    it->second = value;
    return {};
  }
  Status recordSecretAccess(const SecretAccess& access) override {
    MutexLock lock(mu_);
    if (fail_audit_) return makeError(ErrorCode::kUnavailable, "the audit store is failing");
    accesses_.push_back(access);
    return {};
  }
  Result<std::vector<std::string>> allowlist(const AccountId&) override {
    MutexLock lock(mu_);
    ++calls_;
    return allowlist_;
  }
  Result<std::string> getConversation(const AccountId&, const std::string& id) override {
    MutexLock lock(mu_);
    ++calls_;
    auto it = conversations_.find(id);
    if (it == conversations_.end()) return notFound("conversation '" + id + "' not found");
    return it->second;
  }
  Result<std::string> contextCall(const AccountId&, const std::string& op,
                                  const std::string& args_json) override {
    namespace bj = boost::json;
    MutexLock lock(mu_);
    ++calls_;
    auto args = json::parseObject(args_json);
    if (!args) return std::unexpected(args.error());
    std::string ns = json::getString(*args, "namespace");
    std::string session = json::getString(*args, "sessionId", "__default");
    if (op == "getListOfNamespaces") {
      bj::array out;
      for (auto& [name, _] : namespaces_)
        out.push_back(bj::object{{"name", name}, {"createdAt", 0}});
      return json::dump(out);
    }
    if (ns.empty()) return invalid("namespace is required");
    if (op == "createNamespace") {
      namespaces_[ns];
      return json::dump(bj::object{{"name", ns}, {"createdAt", 0}});
    }
    auto it = namespaces_.find(ns);
    if (it == namespaces_.end()) return notFound("namespace '" + ns + "' does not exist");
    auto& sessions = it->second;
    if (op == "deleteNamespace") {
      namespaces_.erase(it);
      return std::string("null");
    }
    if (op == "set" || op == "update") {
      auto props = json::requireObject(*args, "properties");
      if (!props) return std::unexpected(props.error());
      auto& s = sessions[session];
      if (op == "set") s.clear();
      for (auto& [k, v] : **props) s[k] = v;
      return std::string("null");
    }
    if (op == "getAll") return json::dump(sessions[session]);
    if (op == "getSelected") {
      bj::object out;
      if (auto* names = args->if_contains("names"); names && names->is_array())
        for (auto& n : names->as_array())
          if (n.is_string())
            if (auto* v = sessions[session].if_contains(n.as_string())) out[n.as_string()] = *v;
      return json::dump(out);
    }
    std::string name = json::getString(*args, "name");
    if (op == "get") {
      auto* v = sessions[session].if_contains(name);
      return v ? json::dump(*v) : std::string("null");
    }
    if (op == "deleteProperty") {
      sessions[session].erase(name);
      return std::string("null");
    }
    if (op == "deleteSession") {
      sessions.erase(session);
      return std::string("null");
    }
    if (op == "getListOfSessions") {
      bj::array out;
      for (auto& [id, _] : sessions) out.push_back(bj::string(id));
      return json::dump(out);
    }
    return invalid("unknown context operation '" + op + "'");
  }

 private:
  Mutex mu_;
  std::map<std::string, std::string> secrets_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::string> allowlist_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::string> conversations_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, boost::json::object>> namespaces_
      PARLEY_GUARDED_BY(mu_);
  std::vector<SecretAccess> accesses_ PARLEY_GUARDED_BY(mu_);
  bool fail_audit_ PARLEY_GUARDED_BY(mu_) = false;
  int calls_ PARLEY_GUARDED_BY(mu_) = 0;
};

}  // namespace parley::functions::testing
