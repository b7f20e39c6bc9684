#pragma once

// An in-memory FunctionHost for tests. Thread-safe.

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "functions/host.h"
#include "functions/memory_context.h"

namespace parley::functions::testing {

class FakeHost final : public FunctionHost {
 public:
  void setSecret(const std::string& key, std::string value) {
    std::lock_guard lock(mu_);
    secrets_[key] = std::move(value);
  }
  std::string secretForTest(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = secrets_.find(key);
    return it == secrets_.end() ? std::string() : it->second;
  }
  void setAllowlist(std::vector<std::string> domains) {
    std::lock_guard lock(mu_);
    allowlist_ = std::move(domains);
  }
  void setConversation(const std::string& id, std::string json) {
    std::lock_guard lock(mu_);
    conversations_[id] = std::move(json);
  }
  int callsForTest() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  // The secret accesses recorded so far, oldest first.
  std::vector<SecretAccess> secretAccessesForTest() {
    std::lock_guard lock(mu_);
    return accesses_;
  }
  // Makes every later recordSecretAccess fail (as a full disk would).
  void failAuditForTest() {
    std::lock_guard lock(mu_);
    fail_audit_ = true;
  }

  // FunctionHost (ignores the account: one account per fake)
  Result<std::string> readSecret(const AccountId&, const std::string& key) override {
    std::lock_guard lock(mu_);
    ++calls_;
    auto it = secrets_.find(key);
    if (it == secrets_.end()) return notFound("secret '" + key + "' does not exist");
    return it->second;
  }
  Status updateSecret(const AccountId&, const std::string& key, const std::string& value) override {
    std::lock_guard lock(mu_);
    ++calls_;
    auto it = secrets_.find(key);
    if (it == secrets_.end()) return notFound("secret '" + key + "' does not exist");
    if (value.size() > 10'000) return invalid("secret value is longer than 10,000 characters");
    it->second = value;
    return {};
  }
  Status recordSecretAccess(const SecretAccess& access) override {
    std::lock_guard lock(mu_);
    if (fail_audit_) return makeError(ErrorCode::kUnavailable, "the audit store is failing");
    accesses_.push_back(access);
    return {};
  }
  Result<std::vector<std::string>> allowlist(const AccountId&) override {
    std::lock_guard lock(mu_);
    ++calls_;
    return allowlist_;
  }
  Result<std::string> getConversation(const AccountId&, const std::string& id) override {
    std::lock_guard lock(mu_);
    ++calls_;
    auto it = conversations_.find(id);
    if (it == conversations_.end()) return notFound("conversation '" + id + "' not found");
    return it->second;
  }
  Result<std::string> contextCall(const AccountId&, const std::string& op,
                                  const std::string& args_json) override {
    {
      std::lock_guard lock(mu_);
      ++calls_;
    }
    return context_.call(op, args_json);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> secrets_;
  std::vector<std::string> allowlist_;
  std::map<std::string, std::string> conversations_;
  MemoryContext context_;
  std::vector<SecretAccess> accesses_;
  bool fail_audit_ = false;
  int calls_ = 0;
};

}  // namespace parley::functions::testing
