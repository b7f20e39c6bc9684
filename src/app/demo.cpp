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
  if (!created) return std::unexpected(created.error());
  return created->id.str();
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
  if (!created) return std::unexpected(created.error());
  return created->id.str();
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
      d.account = json::getString(*o, "account", d.account);
      auto user = [&](const char* k, DemoUser& u) {
        if (auto it = o->find(k); it != o->end() && it->value().is_object()) {
          u.username = json::getString(it->value().as_object(), "username");
          u.password = json::getString(it->value().as_object(), "password");
        }
      };
      user("admin", d.admin);
      user("agent", d.agent);
      user("bot", d.bot);
      have_file = !d.admin.password.empty() && !d.agent.password.empty() && !d.bot.password.empty();
    }
  }
  if (!have_file) {
    d.admin = {"admin", randomHex(8), ""};
    d.agent = {"agent", randomHex(8), ""};
    d.bot = {"bot", randomHex(8), ""};
  }
  AccountId acc(d.account);
  if (auto a = store.accounts().getAccount(acc); !a) {
    if (a.error().code != ErrorCode::kNotFound) return std::unexpected(a.error());
    store::Account account;
    account.id = acc;
    account.name = "Parley demo";
    account.created_at = clock.nowMs();
    if (auto s = store.accounts().createAccount(account); !s) return std::unexpected(s.error());
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
    auto u = [](const DemoUser& x) {
      return bj::object{{"username", x.username}, {"password", x.password}};
    };
    bj::object o{
        {"account", d.account}, {"admin", u(d.admin)}, {"agent", u(d.agent)}, {"bot", u(d.bot)}};
    std::string text = bj::serialize(o) + "\n";
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
