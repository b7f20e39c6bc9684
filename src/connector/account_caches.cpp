#include "connector/account_caches.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/url/parse.hpp>
#include <cctype>

#include "common/log.h"

namespace parley::connector {

namespace bj = boost::json;
using SteadyClock = std::chrono::steady_clock;

// ---- SkillCache

void SkillCache::put(const AccountId& acc, std::vector<store::Skill> skills) {
  MutexLock lock(mu_);
  by_account_[acc.str()] = Entry{std::move(skills), SteadyClock::now()};
}

void SkillCache::forget(const AccountId& acc) {
  MutexLock lock(mu_);
  by_account_.erase(acc.str());
}

template <class Pred>
std::optional<store::Skill> SkillCache::find(const AccountId& acc, Pred pred) {
  auto now = SteadyClock::now();
  {
    MutexLock lock(mu_);
    if (auto it = by_account_.find(acc.str()); it != by_account_.end()) {
      bool fresh = now - it->second.loaded_at < kTtl;
      for (const auto& s : it->second.skills)
        if (pred(s) && fresh) return s;
      if (fresh && now - it->second.loaded_at < kMissReload) return std::nullopt;
    }
  }
  ++loads_;
  auto skills = accounts_.listSkills(acc);
  if (!skills) {
    spdlog::warn("connector: cannot read the skills of account {}: {}", acc.str(),
                 skills.error().message);
    return std::nullopt;
  }
  std::optional<store::Skill> found;
  for (const auto& s : *skills)
    if (!found && pred(s)) found = s;
  put(acc, std::move(*skills));
  return found;
}

std::string SkillCache::name(const AccountId& acc, const SkillId& id) {
  auto s = find(acc, [&](const store::Skill& k) { return k.id == id; });
  return s ? s->name : std::string();
}

std::optional<SkillId> SkillCache::byName(const AccountId& acc, const std::string& name) {
  auto s = find(acc, [&](const store::Skill& k) { return k.name == name; });
  return s ? std::optional<SkillId>(s->id) : std::nullopt;
}

// ---- HookCache

void HookCache::forget(const AccountId& acc) {
  MutexLock lock(mu_);
  by_account_.erase(acc.str());
}

std::vector<FunctionId> HookCache::functions(const AccountId& acc, const std::string& event) {
  auto now = SteadyClock::now();
  {
    MutexLock lock(mu_);
    if (auto it = by_account_.find(acc.str());
        it != by_account_.end() && now - it->second.loaded_at < kTtl) {
      auto e = it->second.by_event.find(event);
      return e == it->second.by_event.end() ? std::vector<FunctionId>{} : e->second;
    }
  }
  auto fns = functions_.listFunctions(acc);
  if (!fns) {
    spdlog::warn("connector: cannot list the hook functions of account {}: {}", acc.str(),
                 fns.error().message);
    return {};
  }
  std::vector<const store::FunctionRecord*> deployed;
  for (const auto& f : *fns)
    if ((f.state == store::FunctionState::kProductive ||
         f.state == store::FunctionState::kModified) &&
        f.event_id.starts_with("bot_connectors_") && f.event_id.ends_with("_hook"))
      deployed.push_back(&f);
  std::ranges::sort(deployed, [](auto* a, auto* b) { return a->name < b->name; });
  Entry list;
  list.loaded_at = now;
  for (auto* f : deployed) list.by_event[f->event_id].push_back(f->uuid);
  std::vector<FunctionId> out = list.by_event[event];
  MutexLock lock(mu_);
  by_account_[acc.str()] = std::move(list);
  return out;
}

// ---- ImageAllowlists

Status ImageAllowlists::load() {
  auto accounts = accounts_.listAccounts();
  if (!accounts) return std::unexpected(accounts.error());
  std::map<std::string, std::vector<std::string>> loaded;
  for (const auto& a : *accounts) {
    auto l = bots_.getImageAllowlist(a.id);
    if (l)
      loaded[a.id.str()] = std::move(*l);
    else if (l.error().code != ErrorCode::kNotFound)
      return std::unexpected(l.error());
  }
  MutexLock lock(mu_);
  stored_ = std::move(loaded);
  return {};
}

std::optional<std::vector<std::string>> ImageAllowlists::forAccount(const AccountId& acc) const {
  {
    MutexLock lock(mu_);
    if (auto it = stored_.find(acc.str()); it != stored_.end()) return it->second;
  }
  return fallback_ ? fallback_(acc) : std::nullopt;
}

bj::object ImageAllowlists::json(const AccountId& acc) const {
  MutexLock lock(mu_);
  auto it = stored_.find(acc.str());
  bj::array entries;
  if (it != stored_.end())
    for (const auto& e : it->second) entries.emplace_back(e);
  return bj::object{{"configured", it != stored_.end()}, {"entries", std::move(entries)}};
}

Result<bj::object> ImageAllowlists::put(const AccountId& acc, const bj::object& body) {
  auto entries = parseImageAllowlist(body);
  if (!entries) return std::unexpected(entries.error());
  {
    MutexLock write(write_mu_);
    if (auto s = bots_.putImageAllowlist(acc, *entries); !s) return std::unexpected(s.error());
    MutexLock lock(mu_);
    stored_[acc.str()] = *entries;
  }
  return json(acc);
}

Status ImageAllowlists::remove(const AccountId& acc) {
  MutexLock write(write_mu_);
  if (auto s = bots_.deleteImageAllowlist(acc); !s) return s;
  MutexLock lock(mu_);
  stored_.erase(acc.str());
  return {};
}

Status ImageAllowlists::reload(const AccountId& acc) {
  MutexLock write(write_mu_);
  auto l = bots_.getImageAllowlist(acc);
  if (!l && l.error().code != ErrorCode::kNotFound) return std::unexpected(l.error());
  MutexLock lock(mu_);
  if (l)
    stored_[acc.str()] = std::move(*l);
  else
    stored_.erase(acc.str());
  return {};
}

Result<std::vector<std::string>> parseImageAllowlist(const bj::object& body) {
  constexpr std::size_t kMax = ImageAllowlists::kMaxEntries;
  auto it = body.find("entries");
  if (it == body.end() || !it->value().is_array())
    return invalid(
        "field 'entries' is required: an array of image hosts (\"img.example.com\") or https:// "
        "URL prefixes (\"https://cdn.example.com/images/\")");
  const bj::array& a = it->value().as_array();
  if (a.size() > kMax)
    return invalid(
        fmt::format("field 'entries' has {} entries; at most {} are allowed", a.size(), kMax));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string()) return invalid(fmt::format("entries[{}] must be a string", i));
    std::string e(a[i].as_string());
    auto bad = [&](std::string_view why) {
      return invalid(fmt::format("entries[{}] \"{}\" {}", i, e.substr(0, 100), why));
    };
    if (e.empty() || e.size() > 2048) return bad("must be 1 to 2048 characters");
    if (e.find('*') != std::string::npos)
      return bad("has a wildcard; wildcards are not supported, list every host");
    for (char ch : e)
      if (std::isspace(static_cast<unsigned char>(ch)) ||
          std::iscntrl(static_cast<unsigned char>(ch)))
        return bad("contains white space or control characters");
    if (e.find("://") != std::string::npos) {
      auto u = boost::urls::parse_uri(e);
      if (!u || u->scheme() != "https" || u->encoded_host().empty())
        return bad("must be an https:// URL with a host (images are only allowed over HTTPS)");
    } else {
      if (e.size() > 253) return bad("is not a host name (at most 253 characters)");
      bool ok = true;
      std::size_t label = 0;
      for (char ch : e) {
        if (ch == '.') {
          ok = ok && label > 0;
          label = 0;
        } else if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-') {
          ok = ok && ++label <= 63;
        } else {
          ok = false;
        }
      }
      if (!ok || label == 0)
        return bad(
            "is neither a host name (letters, digits, '-' and '.'; no port, no path) nor an "
            "https:// URL prefix");
    }
    for (const auto& prev : out)
      if (prev == e) return bad("is listed twice");
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace parley::connector
