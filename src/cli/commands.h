#pragma once

// The CLI's commands as plain values plus their runners, apart from CLI11 so that option
// parsing and command behaviour can be tested separately. Not thread-safe.

#include <functional>
#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace parley::cli {

struct FunctionCommand {
  // init, push, pull, deploy, undeploy, invoke, logs, get, schedule
  std::string verb;
  // The function's name (optional for `get`).
  std::string name;
  // `get`: functions or deployments. Default: functions.
  std::string what = "functions";
  // `init`: the event id. Default: no_event.
  std::string event = "no_event";
  // `init`: the description.
  std::string description;
  // The project root that holds functions/. Default: the current directory.
  std::string dir = ".";
  // `invoke`: run in-process in the V8 sandbox instead of on the server.
  bool local = false;
  // `logs`: filters (level Info|Warn|Error, since = ms since the epoch) and page size.
  std::string level;
  long long since = 0;
  int limit = 50;
  // `get`/`logs`/`schedule`: print JSON instead of a table.
  bool json = false;
  // `schedule`: with `cron`, creates a schedule (payload JSON, default {}; paused when
  // `paused`); with one of the ids, deletes, pauses or resumes that schedule; with none of
  // them, lists the function's schedules.
  std::string cron;
  std::string payload;
  bool paused = false;
  std::string delete_id;
  std::string pause_id;
  std::string resume_id;
  // CLI config file; "" = $PARLEY_CONFIG or ~/.config/parley/cli.json.
  std::string config;
};

struct LoginCommand {
  std::string server;
  std::string account;
  std::string username;
  std::string password;  // "" = $PARLEY_PASSWORD
  std::string ca;        // PEM CA file; stored as an absolute path
  std::string config;    // "" = default path
};

// Runs a command; prints results on `out` and errors on `err`. Returns the exit code
// (0 ok, 1 failed).
int runFunctionCommand(const FunctionCommand& cmd, std::ostream& out, std::ostream& err);
int runLoginCommand(const LoginCommand& cmd, std::ostream& out, std::ostream& err);

// As registerFunctionCommands/registerLoginCommand, with the runner replaced (tests).
void registerFunctionCommands(CLI::App& app, std::function<int(const FunctionCommand&)> run);
void registerLoginCommand(CLI::App& app, std::function<int(const LoginCommand&)> run);

}  // namespace parley::cli
