#include "app/demo.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "common/json.h"
#include "common/random.h"

namespace parley::app {
namespace {

namespace bj = boost::json;
namespace fs = std::filesystem;

Result<std::string> skillId(store::Store& store, const AccountId& acc, const std::string& name,
                            const Clock& clock) {
  auto skills = store.accounts().listSkills(acc);
  if (!skills) return std::unexpected(skills.error());
  for (const auto& s : *skills)
    if (s.name == name) return s.id.str();
  store::Skill s;
  s.account = acc;
  s.name = name;
  s.created_at = clock.nowMs();
  auto created = store.accounts().createSkill(s);
  if (created) return created->id.str();
  if (created.error().code != ErrorCode::kConflict) return std::unexpected(created.error());
  // Another node made it since the list: use theirs.
  auto again = store.accounts().listSkills(acc);
  if (!again) return std::unexpected(again.error());
  for (const auto& k : *again)
    if (k.name == name) return k.id.str();
  return std::unexpected(created.error());
}

Result<std::string> ensureUser(store::Store& store, const AccountId& acc, const DemoUser& du,
                               std::vector<store::Role> roles, store::UserType type,
                               std::vector<SkillId> skills, int max_open, const Clock& clock) {
  auto existing = store.accounts().getUserByLogin(acc, du.username);
  if (existing) return existing->id.str();
  if (existing.error().code != ErrorCode::kNotFound) return std::unexpected(existing.error());
  auto hash = crypto::hashPassword(du.password);
  if (!hash) return std::unexpected(hash.error());
  store::User u;
  u.account = acc;
  u.pid = randomUuid();
  u.login_name = du.username;
  u.password_hash = *hash;
  u.roles = std::move(roles);
  u.type = type;
  u.skills = std::move(skills);
  u.max_open_conversations = max_open;
  u.created_at = clock.nowMs();
  auto created = store.accounts().createUser(u);
  if (created) return created->id.str();
  if (created.error().code != ErrorCode::kConflict) return std::unexpected(created.error());
  // Another node made it since the lookup: use theirs.
  auto again = store.accounts().getUserByLogin(acc, du.username);
  if (!again) return std::unexpected(again.error());
  return again->id.str();
}

bj::object credentialsJson(const Demo& d) {
  auto u = [](const DemoUser& x) {
    return bj::object{{"username", x.username}, {"password", x.password}};
  };
  return bj::object{
      {"account", d.account}, {"admin", u(d.admin)}, {"agent", u(d.agent)}, {"bot", u(d.bot)}};
}

// Reads the account and the three users' credentials from `o` into `d`; false when incomplete.
bool readCredentials(const bj::object& o, Demo& d) {
  d.account = json::getString(o, "account", d.account);
  auto user = [&](const char* k, DemoUser& u) {
    if (auto it = o.find(k); it != o.end() && it->value().is_object()) {
      u.username = json::getString(it->value().as_object(), "username");
      u.password = json::getString(it->value().as_object(), "password");
    }
  };
  user("admin", d.admin);
  user("agent", d.agent);
  user("bot", d.bot);
  return !d.admin.password.empty() && !d.agent.password.empty() && !d.bot.password.empty();
}

}  // namespace

Result<Demo> ensureDemo(store::Store& store, const Clock& clock, const std::string& data_dir) {
  Demo d;
  fs::path file = fs::path(data_dir) / "demo.json";
  bool have_file = false;
  {
    std::ifstream in(file);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      auto o = json::parseObject(ss.str());
      if (!o) return invalid(fmt::format("{} is corrupt: {}", file.string(), o.error().message));
      have_file = readCredentials(*o, d);
    }
  }
  if (!have_file) {
    d.admin = {"admin", randomHex(8), ""};
    d.agent = {"agent", randomHex(8), ""};
    d.bot = {"bot", randomHex(8), ""};
  }
  // Nodes sharing a store share one set of credentials: the first node's (its file's, or the
  // random ones it made) are stored as cluster material; the others take them.
  if (store::ClusterStore* cluster = store.cluster()) {
    const std::string offered = bj::serialize(credentialsJson(d));
    auto stored = cluster->putMaterialIfAbsent("demo", offered);
    if (!stored) return std::unexpected(stored.error());
    if (*stored != offered) {
      auto o = json::parseObject(*stored);
      Demo theirs;
      if (!o || !readCredentials(*o, theirs))
        return internalError("the demo credentials in the store are corrupt");
      d.account = theirs.account;
      d.admin = theirs.admin;
      d.agent = theirs.agent;
      d.bot = theirs.bot;
      have_file = false;  // write them into DIR/demo.json
    }
  }
  AccountId acc(d.account);
  if (auto a = store.accounts().getAccount(acc); !a) {
    if (a.error().code != ErrorCode::kNotFound) return std::unexpected(a.error());
    store::Account account;
    account.id = acc;
    account.name = "Parley demo";
    account.created_at = clock.nowMs();
    if (auto s = store.accounts().createAccount(account);
        !s && s.error().code != ErrorCode::kConflict)  // Conflict: another node made it
      return std::unexpected(s.error());
  }
  auto general = skillId(store, acc, "general", clock);
  auto human = skillId(store, acc, "human", clock);
  auto escalation = skillId(store, acc, "escalation", clock);
  if (!general) return std::unexpected(general.error());
  if (!human) return std::unexpected(human.error());
  if (!escalation) return std::unexpected(escalation.error());
  d.skill_general = *general;
  d.skill_human = *human;
  d.skill_escalation = *escalation;
  using store::Role;
  auto admin =
      ensureUser(store, acc, d.admin,
                 {Role::kAdmin, Role::kAgentManager, Role::kFaasAdmin, Role::kFaasDeveloper},
                 store::UserType::kHuman, {}, 10, clock);
  if (!admin) return std::unexpected(admin.error());
  auto agent = ensureUser(store, acc, d.agent, {Role::kAgent}, store::UserType::kHuman,
                          {SkillId(*human), SkillId(*escalation)}, 10, clock);
  if (!agent) return std::unexpected(agent.error());
  auto bot = ensureUser(store, acc, d.bot, {Role::kAgent}, store::UserType::kBot,
                        {SkillId(*general)}, 1000, clock);
  if (!bot) return std::unexpected(bot.error());
  d.admin.user_id = *admin;
  d.agent.user_id = *agent;
  d.bot.user_id = *bot;
  if (!have_file) {
    std::string text = bj::serialize(credentialsJson(d)) + "\n";
    fs::path tmp = file;
    tmp += ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return internalError(fmt::format("cannot write {}", tmp.string()));
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::fsync(fd);
    ::close(fd);
    if (!ok) return internalError(fmt::format("cannot write {}", tmp.string()));
    std::error_code ec;
    fs::rename(tmp, file, ec);
    if (ec) return internalError(fmt::format("cannot write {}: {}", file.string(), ec.message()));
  }
  return d;
}

}  // namespace parley::app
