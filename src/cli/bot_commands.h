#pragma once

// `parley bot test` (the conversation tester) and `parley bot replay` (a bot's recorded turns
// against another function version), over the REST API (`bots/{id}/tester…`, `bots/{id}/replay`).
// Not thread-safe.

#include <functional>
#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace parley::cli {

struct BotCommand {
  // test, replay
  std::string verb;
  // The bot's id.
  std::string bot;
  // "draft", "deployed", a version number or a deployment id. Default for test: draft; replay
  // REQUIRES it.
  std::string function_version;
  // test: MESSAGING or CHAT. Default: MESSAGING.
  std::string channel = "MESSAGING";
  // replay: a transcript file (the JSON `GET bots/{id}/turns` answers, or a tester session);
  // "" = the bot's turn records.
  std::string from;
  // Print JSON (test: one turn per line; replay: the report).
  bool json = false;
  // CLI config file; "" = $PARLEY_CONFIG or ~/.config/parley/cli.json.
  std::string config;
};

// Exit codes of `parley bot replay`.
inline constexpr int kReplaySame = 0;
inline constexpr int kReplayChanged = 1;
inline constexpr int kReplayFailed = 2;

// Runs a command. `test` reads consumer messages from `in`, one per line (empty lines are
// skipped), and prints each turn; it returns 0, or 1 on an error. `replay` returns kReplaySame
// when no replayed turn differs, kReplayChanged when one does, kReplayFailed when the replay
// could not run or did not finish.
int runBotCommand(const BotCommand& cmd, std::istream& in, std::ostream& out, std::ostream& err);

// Adds `parley bot test|replay`; the overload taking a runner is for tests.
void registerBotCommands(CLI::App& app);
void registerBotCommands(CLI::App& app, std::function<int(const BotCommand&)> run);

}  // namespace parley::cli
