#pragma once

// `parley account create|list|disable|enable --data DIR`: operator commands that work on the
// data directory's store directly (no server, no credentials beyond access to DIR). See
// accounts.h for what they do and why they are safe while a server runs on DIR.

namespace CLI {
class App;
}

namespace parley::app {

// Adds the `account` subcommands. A failing command makes app.parse throw CLI::RuntimeError(1)
// after printing the reason on stderr. `app` must outlive parsing.
void registerAccountCommands(CLI::App& app);

}  // namespace parley::app
