#pragma once

// The `--demo` data set: one account with skills, an admin, a human agent and a bot user,
// created once per data directory (idempotent across restarts). Passwords are random per data
// directory and kept in DIR/demo.json so every start prints the same ones.

#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::app {

struct DemoUser {
  std::string username;
  std::string password;
  std::string user_id;
};

struct Demo {
  std::string account = "12345678";
  DemoUser admin;
  DemoUser agent;
  DemoUser bot;
  std::string skill_general;
  std::string skill_human;
  std::string skill_escalation;
};

// Creates (or completes) the demo data in `store` and DIR/demo.json. Blocking. With a store that
// has cluster material (Store::cluster()), the credentials are the store's "demo" material (the
// first caller's), so every node sharing the store prints the same ones; callers racing on one
// store (nodes starting at once) create the account, skills and users once.
Result<Demo> ensureDemo(store::Store& store, const Clock& clock, const std::string& data_dir);

}  // namespace parley::app
