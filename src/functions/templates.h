#pragma once

// Event catalogue and code templates of the functions platform (bot-connector-spec §4.13, §1.7,
// §3.5), served by the server (GET functions/templates) and written by `parley function init`.
// Immutable data; thread-safe.

#include <string>
#include <string_view>
#include <vector>

namespace parley::functions {

struct EventInfo {
  std::string id;    // e.g. "bot_connectors_custom_integration", "no_event"
  std::string name;  // what the console shows, e.g. "Third-Party Bots Custom Integration"
};

// A code template for an event with a realistic sample invocation input.
struct Template {
  std::string event;
  std::string name;  // e.g. "Default Template", "Greeting"
  std::string code;
  // The whole invocation input {"timestamp", "headers", "payload"} as JSON text.
  std::string sample_payload;
};

inline constexpr std::string_view kNoEvent = "no_event";
inline constexpr std::string_view kCustomIntegrationEvent = "bot_connectors_custom_integration";

// Every event a function may be bound to (§4.13 plus "no_event").
const std::vector<EventInfo>& knownEvents();
bool isKnownEvent(std::string_view event_id);

// The dedicated templates: custom integration, the three hooks and the generic Greeting.
const std::vector<Template>& allTemplates();
// The template for `event_id`: its dedicated one, else the generic Greeting re-labelled with the
// event. Precondition: isKnownEvent(event_id).
Template templateFor(std::string_view event_id);

}  // namespace parley::functions
