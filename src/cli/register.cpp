#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/cli.h"
#include "cli/commands.h"

namespace parley::cli {

namespace {

void addCommon(CLI::App* sub, FunctionCommand& cmd) {
  sub->add_option("--dir", cmd.dir, "Project root that holds functions/ (default: .)");
  sub->add_option("--config", cmd.config,
                  "CLI config file (default: $PARLEY_CONFIG or ~/.config/parley/cli.json)");
}

// Adds one `function <verb>` subcommand whose callback runs `run` with its own command value.
CLI::App* addVerb(CLI::App* fn, const std::string& verb, const std::string& help,
                  const std::function<int(const FunctionCommand&)>& run,
                  const std::function<void(CLI::App*, FunctionCommand&)>& options) {
  auto cmd = std::make_shared<FunctionCommand>();
  cmd->verb = verb;
  CLI::App* sub = fn->add_subcommand(verb, help);
  addCommon(sub, *cmd);
  options(sub, *cmd);
  sub->callback([cmd, run] {
    int rc = run(*cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
  return sub;
}

}  // namespace

void registerFunctionCommands(CLI::App& app, std::function<int(const FunctionCommand&)> run) {
  CLI::App* fn = app.add_subcommand(
      "function",
      "Develop functions: init, push, pull, deploy, undeploy, invoke, logs, get, schedule");
  fn->require_subcommand(1);
  auto name = [](CLI::App* sub, FunctionCommand& c) {
    sub->add_option("name", c.name, "Function name (functions/<name>/)")->required();
  };
  addVerb(fn, "init", "Create functions/<name>/ (index.js, config.json) from the event's template",
          run, [&](CLI::App* sub, FunctionCommand& c) {
            name(sub, c);
            sub->add_option("-e,--event", c.event,
                            "Event id, e.g. bot_connectors_custom_integration (default: no_event)");
            sub->add_option("-d,--description", c.description, "Description");
          });
  addVerb(fn, "push", "Create or update the function on the server from functions/<name>/", run,
          name);
  addVerb(fn, "pull", "Write the server's function into functions/<name>/", run, name);
  addVerb(fn, "deploy", "Deploy the function's saved code", run, name);
  addVerb(fn, "undeploy", "Undeploy the function", run, name);
  addVerb(fn, "invoke", "Invoke with the input of config.json; --local runs it in-process", run,
          [&](CLI::App* sub, FunctionCommand& c) {
            name(sub, c);
            sub->add_flag("-l,--local", c.local,
                          "Run functions/<name>/index.js in the local V8 sandbox (no server)");
          });
  addVerb(fn, "logs", "Show the function's stored logs, newest first", run,
          [&](CLI::App* sub, FunctionCommand& c) {
            name(sub, c);
            sub->add_option("--level", c.level, "Only Info, Warn or Error (comma-separated)");
            sub->add_option("--since", c.since, "Only logs since this time (ms since the epoch)");
            sub->add_option("--limit", c.limit, "At most this many entries (default: 50)")
                ->check(CLI::Range(1, 1000));
            sub->add_flag("--json", c.json, "Print JSON");
          });
  addVerb(
      fn, "schedule",
      "List the function's schedules; --cron creates one, --delete/--pause/--resume change one",
      run, [&](CLI::App* sub, FunctionCommand& c) {
        name(sub, c);
        auto* cron = sub->add_option(
            "--cron", c.cron, "Create a schedule: five cron fields in UTC, e.g. \"*/15 * * * *\"");
        sub->add_option("--payload", c.payload, "The runs' payload, JSON (default: {})")
            ->needs(cron);
        sub->add_flag("--paused", c.paused, "Create it paused")->needs(cron);
        auto* del = sub->add_option("--delete", c.delete_id, "Delete the schedule with this uuid");
        auto* pause = sub->add_option("--pause", c.pause_id, "Pause the schedule with this uuid");
        auto* resume =
            sub->add_option("--resume", c.resume_id, "Resume the schedule with this uuid");
        cron->excludes(del)->excludes(pause)->excludes(resume);
        del->excludes(pause)->excludes(resume);
        pause->excludes(resume);
        sub->add_flag("--json", c.json, "Print JSON");
      });
  addVerb(fn, "get", "List functions or deployments", run, [&](CLI::App* sub, FunctionCommand& c) {
    sub->add_option("what", c.what, "functions (default) or deployments")
        ->check(CLI::IsMember({"functions", "deployments"}));
    sub->add_option("name", c.name, "Only this function");
    sub->add_flag("--json", c.json, "Print JSON");
  });
}

void registerLoginCommand(CLI::App& app, std::function<int(const LoginCommand&)> run) {
  auto cmd = std::make_shared<LoginCommand>();
  CLI::App* sub = app.add_subcommand("login", "Log in to a Parley server and save the bearer");
  sub->add_option("--server", cmd->server, "Server URL, e.g. https://127.0.0.1:8443")->required();
  sub->add_option("--account", cmd->account, "Account id")->required();
  sub->add_option("--username", cmd->username, "Login name")->required();
  sub->add_option("--password", cmd->password, "Password (default: $PARLEY_PASSWORD)");
  sub->add_option("--ca", cmd->ca, "CA certificate (PEM) of the server, e.g. DIR/tls/ca.pem")
      ->check(CLI::ExistingFile);
  sub->add_option("--config", cmd->config,
                  "CLI config file (default: $PARLEY_CONFIG or ~/.config/parley/cli.json)");
  sub->callback([cmd, run] {
    int rc = run(*cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

void registerFunctionCommands(CLI::App& app) {
  registerFunctionCommands(
      app, [](const FunctionCommand& c) { return runFunctionCommand(c, std::cout, std::cerr); });
}

void registerLoginCommand(CLI::App& app) {
  registerLoginCommand(
      app, [](const LoginCommand& c) { return runLoginCommand(c, std::cout, std::cerr); });
}

}  // namespace parley::cli
