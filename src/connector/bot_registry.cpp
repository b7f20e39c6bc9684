#include "connector/bot_registry.h"

namespace parley::connector {

BotRuntime::BotRuntime(AccountId account, BotId id, store::User user,
                       std::shared_ptr<const BotConfig> config, store::BotStatus status)
    : account(std::move(account)),
      id(std::move(id)),
      user(std::move(user)),
      config_(std::move(config)),
      status_(std::move(status)) {}

std::shared_ptr<const BotConfig> BotRuntime::config() const {
  MutexLock lock(mu_);
  return config_;
}

void BotRuntime::setConfig(std::shared_ptr<const BotConfig> config) {
  MutexLock lock(mu_);
  config_ = std::move(config);
}

store::BotStatus BotRuntime::status() const {
  MutexLock lock(mu_);
  return status_;
}

std::string BotRuntime::lastPlatformError() const {
  MutexLock lock(mu_);
  return last_platform_error_;
}

void BotRuntime::setLastPlatformError(std::string code) {
  MutexLock lock(mu_);
  last_platform_error_ = std::move(code);
}

std::optional<BotRuntime::Transition> BotRuntime::recordHealth(TurnHealth h,
                                                               const std::string& platform_error) {
  MutexLock lock(mu_);
  const store::BotStatus old_status = status_;
  std::optional<store::BotStatus> new_status;
  switch (h) {
    case TurnHealth::kNotCounted:
      return std::nullopt;
    case TurnHealth::kSuccess:
      consecutive_failures_ = 0;
      platform_failures_ = 0;
      if (status_ != store::BotStatus::kOnline) new_status = status_ = store::BotStatus::kOnline;
      break;
    case TurnHealth::kFunctionFailure:
      platform_failures_ = 0;
      ++consecutive_failures_;
      if (status_ == store::BotStatus::kOnline &&
          consecutive_failures_ >= config_->interruption_threshold)
        new_status = status_ = store::BotStatus::kVendorInterruption;
      break;
    case TurnHealth::kPlatformFailure:
      ++platform_failures_;
      last_platform_error_ = platform_error;
      if (status_ != store::BotStatus::kServiceInterruption &&
          (functionGone(platform_error) || platform_failures_ >= config_->interruption_threshold))
        new_status = status_ = store::BotStatus::kServiceInterruption;
      break;
  }
  if (!new_status) return std::nullopt;
  if (old_status == store::BotStatus::kServiceInterruption && probe_timer_) probe_timer_->cancel();
  return Transition{old_status, *new_status};
}

bool BotRuntime::setProbeTimer(std::shared_ptr<boost::asio::steady_timer> timer,
                               const WorkTracker& work) {
  MutexLock lock(mu_);
  if (work.stopped()) return false;
  probe_timer_ = std::move(timer);
  return true;
}

void BotRuntime::cancelProbe() {
  MutexLock lock(mu_);
  if (probe_timer_) probe_timer_->cancel();
}

std::size_t BotRuntime::hold(const std::string& conversation) {
  MutexLock lock(mu_);
  held_.insert(conversation);
  return held_.size();
}

void BotRuntime::release(const std::string& conversation) {
  MutexLock lock(mu_);
  held_.erase(conversation);
}

std::size_t BotRuntime::held() const {
  MutexLock lock(mu_);
  return held_.size();
}

bool platformFailure(std::string_view code) {
  if (!code.starts_with("com.liveperson.faas.")) return false;
  if (code.starts_with("com.liveperson.faas.handler.")) return false;
  if (code == "com.liveperson.faas.function.runtime.limit-reached") return false;
  return true;
}

bool functionGone(std::string_view code) {
  return code == "com.liveperson.faas.es.notdeployed" ||
         code == "com.liveperson.faas.es.missinglambda" ||
         code == "com.liveperson.faas.function.not-found";
}

void BotRegistry::add(const std::shared_ptr<BotRuntime>& bot) {
  MutexLock lock(mu_);
  bots_[{bot->account.str(), bot->id.str()}] = bot;
  by_user_[{bot->account.str(), bot->user.id.str()}] = bot;
}

std::shared_ptr<BotRuntime> BotRegistry::remove(const AccountId& acc, const BotId& id) {
  MutexLock lock(mu_);
  auto it = bots_.find({acc.str(), id.str()});
  if (it == bots_.end()) return nullptr;
  auto bot = it->second;
  bots_.erase(it);
  by_user_.erase({acc.str(), bot->user.id.str()});
  bot->cancelProbe();
  return bot;
}

std::shared_ptr<BotRuntime> BotRegistry::find(const AccountId& acc, const BotId& id) const {
  MutexLock lock(mu_);
  auto it = bots_.find({acc.str(), id.str()});
  return it == bots_.end() ? nullptr : it->second;
}

std::shared_ptr<BotRuntime> BotRegistry::forUser(const AccountId& acc,
                                                 const std::string& user) const {
  MutexLock lock(mu_);
  auto it = by_user_.find({acc.str(), user});
  return it == by_user_.end() ? nullptr : it->second;
}

bool BotRegistry::isActive(const std::shared_ptr<BotRuntime>& bot) const {
  MutexLock lock(mu_);
  auto it = bots_.find({bot->account.str(), bot->id.str()});
  return it != bots_.end() && it->second == bot;
}

std::vector<std::pair<std::string, std::string>> BotRegistry::statuses() const {
  MutexLock lock(mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, b] : bots_) out.emplace_back(k.second, store::botStatusName(b->status()));
  return out;
}

void BotRegistry::cancelProbes() {
  MutexLock lock(mu_);
  for (auto& [k, b] : bots_) b->cancelProbe();
}

}  // namespace parley::connector
