#pragma once

// Operator account management, against a store (the `parley account …` commands open the data
// directory's SQLite store; this works while the server is stopped, and while it runs: SQLite in
// WAL mode lets a second process write, and the server reads account statuses again every
// second, so a disable takes effect there within about a second).
// Blocking (store and password hashing). Not thread-safe beyond what the store is.

#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::app {

struct AccountRequest {
  // The account id: letters, digits, '-' and '_' (at most 64). Empty: 8 random digits.
  std::string id;
  // REQUIRES: a valid name (names.h), at most 100 characters.
  std::string name;
  // The first admin's login name. Default: "admin".
  std::string admin_login = "admin";
  // Its password (6 to 200 characters). Empty: 20 random characters, returned once.
  std::string admin_password;
  // Cost of the admin's password hash. Default: interactive.
  crypto::PasswordCost password_cost = crypto::PasswordCost::kInteractive;
};

struct NewAccount {
  store::Account account;
  store::User admin;
  std::string admin_password;  // as given or generated; shown once, never stored
};

// Creates the account and its first admin (ADMIN, AGENT_MANAGER, FAAS_ADMIN, FAAS_DEVELOPER).
// Invalid for a malformed id, name, login or password; Conflict when the id exists.
Result<NewAccount> createAccount(store::Store& store, const Clock& clock, AccountRequest request);

struct AccountSummary {
  store::Account account;
  std::size_t users = 0;
};
Result<std::vector<AccountSummary>> listAccounts(store::Store& store);

// Disables or enables the account. A disabled account refuses logins, API keys, consumer
// signups and sockets; its data is kept. NotFound when it does not exist.
Status setAccountStatus(store::Store& store, const std::string& id, store::AccountStatus status);

// The account id rule of the REST and LivePerson paths: 1-64 of [A-Za-z0-9_-].
Status validateAccountId(const std::string& id);

}  // namespace parley::app
