#pragma once

// The `parley` CLI commands that talk to a Parley server over its REST API (library parley_cli).
// src/app/main.cpp builds the CLI::App and calls these to add the subcommands.

namespace CLI {
class App;
}

namespace parley::cli {

// Adds `parley function init|push|pull|deploy|undeploy|invoke|logs|get` (the LivePerson
// Functions CLI's commands and project layout). A failing command makes app.parse throw
// CLI::RuntimeError with exit code 1 (CLI11_PARSE turns it into the exit code).
// `app` must outlive parsing.
void registerFunctionCommands(CLI::App& app);

// Adds `parley login --server URL --account ACC --username U --password P [--ca FILE]`, which
// saves {server, account, bearer, ca} to $PARLEY_CONFIG or ~/.config/parley/cli.json (0600).
void registerLoginCommand(CLI::App& app);

// Adds `parley bot test --bot ID [--function-version V] [--channel MESSAGING|CHAT] [--json]`
// (the conversation tester, consumer messages from stdin) and `parley bot replay --bot ID
// --function-version V [--from FILE] [--json]` (exit 0: no differences, 1: differences, 2: the
// replay failed).
void registerBotCommands(CLI::App& app);

}  // namespace parley::cli
