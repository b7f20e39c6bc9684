#include "app/account_command.h"

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "app/accounts.h"
#include "store/sqlite/sqlite_store.h"

namespace parley::app {
namespace {

namespace bj = boost::json;
namespace fs = std::filesystem;

struct AccountFlags {
  std::string data = "./parley-data";
  std::string id;
  std::string name;
  std::string admin = "admin";
  bool password_stdin = false;
};

void printLine(const bj::object& o) {
  std::string line = bj::serialize(o) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

[[noreturn]] void failWith(const std::string& what, const Error& e) {
  std::fprintf(stderr, "parley account: %s: %s\n", what.c_str(), e.message.c_str());
  throw CLI::RuntimeError(1);
}

// Opens DIR/parley.db (migrating it if needed). `create_dir`: make DIR when missing (only
// `account create` may start a new data directory).
std::unique_ptr<store::Store> openStore(const std::string& data, const Clock& clock,
                                        bool create_dir) {
  const fs::path db = fs::path(data) / "parley.db";
  std::error_code ec;
  if (!fs::exists(db, ec)) {
    if (!create_dir)
      failWith(
          "cannot open the store",
          Error{ErrorCode::kNotFound,
                db.string() + " does not exist; give the server's data directory with --data"});
    fs::create_directories(data, ec);
    if (ec)
      failWith("cannot create the data directory " + data,
               Error{ErrorCode::kInternal, ec.message()});
  }
  store::SqliteOptions o;
  // One short-lived writer next to a running server's: SQLite's plain VFS, one reader.
  o.batch_wal_writes = false;
  o.readers = 1;
  auto s = store::openSqliteStore(db.string(), clock, o);
  if (!s) failWith("cannot open the store " + db.string(), s.error());
  return std::move(*s);
}

bj::object accountObject(const store::Account& a) {
  return bj::object{{"id", a.id.str()},
                    {"name", a.name},
                    {"status", store::accountStatusName(a.status)},
                    {"createdAt", a.created_at}};
}

void setStatus(const AccountFlags& f, store::AccountStatus status) {
  SystemClock clock;
  auto store = openStore(f.data, clock, false);
  if (auto st = setAccountStatus(*store, f.id, status); !st)
    failWith(
        std::string(status == store::AccountStatus::kDisabled ? "disable" : "enable") + " " + f.id,
        st.error());
  printLine(
      bj::object{{"event", "account"}, {"id", f.id}, {"status", store::accountStatusName(status)}});
}

}  // namespace

void registerAccountCommands(CLI::App& app) {
  auto flags = std::make_shared<AccountFlags>();
  auto* account = app.add_subcommand(
      "account",
      "Operator: create, list, disable and enable accounts in a data directory (works with the "
      "server stopped or running)");
  account->require_subcommand(1);

  auto* create = account->add_subcommand(
      "create", "Create an account and its first admin; prints the admin's password once");
  create->add_option("--data", flags->data, "The server's data directory")->capture_default_str();
  create->add_option("--name", flags->name, "Display name of the account")->required();
  create->add_option("--id", flags->id, "Account id ([A-Za-z0-9_-], default: 8 random digits)");
  create->add_option("--admin", flags->admin, "Login name of the first admin")
      ->capture_default_str();
  create->add_flag("--admin-password-stdin", flags->password_stdin,
                   "Read the admin's password from the first line of stdin (default: generate "
                   "one and print it)");
  create->callback([flags] {
    SystemClock clock;
    AccountRequest r;
    r.id = flags->id;
    r.name = flags->name;
    r.admin_login = flags->admin;
    if (flags->password_stdin) {
      std::getline(std::cin, r.admin_password);
      if (r.admin_password.empty())
        failWith("create", Error{ErrorCode::kInvalid, "no password on stdin"});
    }
    auto store = openStore(flags->data, clock, true);
    auto created = createAccount(*store, clock, std::move(r));
    if (!created) failWith("create", created.error());
    bj::object out = accountObject(created->account);
    out.emplace("event", "account");
    out["admin"] = bj::object{{"username", created->admin.login_name},
                              {"password", created->admin_password},
                              {"userId", created->admin.id.str()}};
    printLine(out);
  });

  auto* list = account->add_subcommand("list", "One JSON line per account");
  list->add_option("--data", flags->data, "The server's data directory")->capture_default_str();
  list->callback([flags] {
    SystemClock clock;
    auto store = openStore(flags->data, clock, false);
    auto all = listAccounts(*store);
    if (!all) failWith("list", all.error());
    for (const auto& s : *all) {
      bj::object o = accountObject(s.account);
      o["users"] = s.users;
      printLine(o);
    }
  });

  for (auto [verb, status, help] :
       {std::tuple{"disable", store::AccountStatus::kDisabled,
                   "Disable an account: logins, API keys, signups and sockets are refused (a "
                   "running server closes its sockets within about a second); data is kept"},
        std::tuple{"enable", store::AccountStatus::kActive, "Enable a disabled account again"}}) {
    auto* sub = account->add_subcommand(verb, help);
    sub->add_option("--data", flags->data, "The server's data directory")->capture_default_str();
    sub->add_option("id", flags->id, "The account id")->required();
    sub->callback([flags, status] { setStatus(*flags, status); });
  }
}

}  // namespace parley::app
