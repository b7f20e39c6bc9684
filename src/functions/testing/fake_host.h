#pragma once

// An in-memory FunctionHost for tests. Thread-safe.

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "functions/host.h"
#include "functions/memory_context.h"

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

  // Answers platformCall; without one it fails with Unavailable.
  void setPlatformCall(std::function<Result<std::string>(const PlatformCall&)> fn) {
    MutexLock lock(mu_);
    platform_call_ = std::move(fn);
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
    {
      MutexLock lock(mu_);
      ++calls_;
    }
    return context_.call(op, args_json);
  }
  Result<std::string> platformCall(const PlatformCall& call) override {
    std::function<Result<std::string>(const PlatformCall&)> fn;
    {
      MutexLock lock(mu_);
      ++calls_;
      fn = platform_call_;
    }
    if (!fn) return makeError(ErrorCode::kUnavailable, "the test host has no platform API");
    return fn(call);
  }

 private:
  Mutex mu_;
  std::map<std::string, std::string> secrets_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::string> allowlist_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::string> conversations_ PARLEY_GUARDED_BY(mu_);
  MemoryContext context_;
  std::vector<SecretAccess> accesses_ PARLEY_GUARDED_BY(mu_);
  bool fail_audit_ PARLEY_GUARDED_BY(mu_) = false;
  std::function<Result<std::string>(const PlatformCall&)> platform_call_ PARLEY_GUARDED_BY(mu_);
  int calls_ PARLEY_GUARDED_BY(mu_) = 0;
};

}  // namespace parley::functions::testing
