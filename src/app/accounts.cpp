#include "app/accounts.h"

#include <fmt/format.h>
#include <sodium.h>

#include <cctype>

#include "common/names.h"
#include "common/random.h"

namespace parley::app {
namespace {

// `n` random characters from an alphabet without look-alikes.
std::string randomPassword(std::size_t n) {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  if (sodium_init() < 0) return randomHex(n);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += kAlphabet[randombytes_uniform(sizeof(kAlphabet) - 1)];
  return out;
}

std::string randomDigits(std::size_t n) {
  std::string out;
  if (sodium_init() < 0) return randomHex(n / 2 + 1).substr(0, n);
  for (std::size_t i = 0; i < n; ++i)
    out += static_cast<char>('0' + (i == 0 ? 1 + randombytes_uniform(9) : randombytes_uniform(10)));
  return out;
}

}  // namespace

Status validateAccountId(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return invalid("the account id must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'");
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
      return invalid(fmt::format(
          "the account id '{}' may contain only A-Z, a-z, 0-9, '-' and '_' (it is part of URLs)",
          id));
  return {};
}

Result<NewAccount> createAccount(store::Store& store, const Clock& clock, AccountRequest r) {
  if (auto st = validateName("account name", r.name, 100); !st) return std::unexpected(st.error());
  if (auto st = validateName("admin login name", r.admin_login, 100); !st)
    return std::unexpected(st.error());
  if (!r.admin_password.empty() && (r.admin_password.size() < 6 || r.admin_password.size() > 200))
    return invalid("the admin password must be 6 to 200 characters");
  auto& accounts = store.accounts();
  if (r.id.empty()) {
    for (int attempt = 0; attempt < 20 && r.id.empty(); ++attempt) {
      std::string candidate = randomDigits(8);
      auto existing = accounts.getAccount(AccountId(candidate));
      if (!existing && existing.error().code == ErrorCode::kNotFound) r.id = candidate;
    }
    if (r.id.empty()) return internalError("could not find a free account id; give one with --id");
  } else if (auto st = validateAccountId(r.id); !st) {
    return std::unexpected(st.error());
  }
  NewAccount out;
  out.admin_password = r.admin_password.empty() ? randomPassword(20) : r.admin_password;
  auto hash = crypto::hashPassword(out.admin_password, r.password_cost);
  if (!hash) return std::unexpected(hash.error());
  out.account.id = AccountId(r.id);
  out.account.name = r.name;
  out.account.created_at = clock.nowMs();
  if (auto st = accounts.createAccount(out.account); !st) {
    if (st.error().code == ErrorCode::kConflict)
      return conflict(fmt::format("account {} already exists; choose another --id", r.id));
    return std::unexpected(st.error());
  }
  store::User admin;
  admin.account = out.account.id;
  admin.pid = randomUuid();
  admin.login_name = r.admin_login;
  admin.password_hash = *hash;
  admin.roles = {store::Role::kAdmin, store::Role::kAgentManager, store::Role::kFaasAdmin,
                 store::Role::kFaasDeveloper};
  admin.created_at = clock.nowMs();
  auto created = accounts.createUser(admin);
  if (!created) return std::unexpected(created.error());
  out.admin = std::move(*created);
  return out;
}

Result<std::vector<AccountSummary>> listAccounts(store::Store& store) {
  auto list = store.accounts().listAccounts();
  if (!list) return std::unexpected(list.error());
  std::vector<AccountSummary> out;
  for (auto& a : *list) {
    AccountSummary s;
    auto users = store.accounts().listUsers(a.id);
    if (!users) return std::unexpected(users.error());
    s.users = users->size();
    s.account = std::move(a);
    out.push_back(std::move(s));
  }
  return out;
}

Status setAccountStatus(store::Store& store, const std::string& id, store::AccountStatus status) {
  if (auto st = validateAccountId(id); !st) return st;
  return store.accounts().setAccountStatus(AccountId(id), status);
}

}  // namespace parley::app
