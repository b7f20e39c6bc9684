#include "functions/templates.h"

#include <algorithm>

namespace parley::functions {

namespace {

// Third-Party Bots Custom Integration: a complete bot. Deployed unchanged it greets, echoes text,
// shows quick replies and a structured-content card, and transfers or closes on keywords.
constexpr std::string_view kCustomIntegrationCode =
    R"JS(// Third-Party Bots - Custom Integration (Default Template)
//
// Called once per consumer message (and with event.name === "WELCOME" when the bot should
// greet first). input.payload = { message, convId, event?, context: { lpEvent, lpSdes } }.
// Answer with callback(null, { messages: [...], context: { action?, actionParameters? } }).
//
// Keywords: "transfer" (or "agent") hands over to a human, "close" (or "bye") ends the
// conversation, "options" shows quick replies, "card" shows structured content, "urgent"
// raises the time to respond. Anything else is echoed back.
// Environment variables (optional): TRANSFER_SKILL - the skill name to transfer to.

const RICH_CONTENT = "com.liveperson.bot-connectors.consumer.send-rich-content";
const FILE_SENT = "com.liveperson.bot-connectors.consumer.send-file";

function quickReplies(text, titles) {
  return {
    structuredContent: {
      message: text,
      quickReplies: {
        type: "quickReplies",
        itemsPerRow: 8,
        replies: titles.map((title) => ({
          type: "button",
          tooltip: title,
          title: title,
          click: {
            actions: [{ type: "publishText", text: title }],
            metadata: [{ type: "ExternalId", id: "qr-" + title.toLowerCase() }],
          },
        })),
      },
    },
    metadata: [{ type: "ExternalId", id: "quick-replies" }],
  };
}

function card() {
  return {
    structuredContent: {
      type: "vertical",
      elements: [
        { type: "text", text: "Parley bot", tooltip: "Parley bot", style: { bold: true, size: "large" } },
        { type: "text", text: "What would you like to do?", tooltip: "What would you like to do?" },
        {
          type: "button",
          title: "Talk to an agent",
          tooltip: "Talk to an agent",
          click: { actions: [{ type: "publishText", text: "transfer" }] },
        },
        {
          type: "button",
          title: "End the conversation",
          tooltip: "End the conversation",
          click: { actions: [{ type: "publishText", text: "close" }] },
        },
      ],
    },
    metadata: [{ type: "ExternalId", id: "main-card" }],
  };
}

function lambda(input, callback) {
  const payload = (input && input.payload) || {};
  const lpEvent = (payload.context && payload.context.lpEvent) || {};
  const message = typeof payload.message === "string" ? payload.message.trim() : "";
  const text = message.toLowerCase();
  const isWelcome =
    (payload.event && payload.event.name === "WELCOME") ||
    lpEvent.isWelcomeEvent === true ||
    (lpEvent.type === "ContentEvent" && lpEvent.content === "welcome");

  if (isWelcome) {
    const greeting = ["Hi! I am the Parley bot. How can I help you today?"];
    if (lpEvent.lastConsumerMessage) greeting.push("You said: " + lpEvent.lastConsumerMessage);
    greeting.push(quickReplies("Choose an option:", ["Options", "Card", "Transfer", "Close"]));
    return callback(null, { messages: greeting });
  }
  if (message === RICH_CONTENT) {
    return callback(null, { messages: ["Thanks, I received your rich content."] });
  }
  if (message === FILE_SENT) {
    return callback(null, { messages: ["Thanks, I received your file."] });
  }
  if (text === "transfer" || text.includes("agent")) {
    console.info("transferring conversation", { convId: payload.convId });
    return callback(null, {
      messages: ["Let me transfer you to an agent. One moment please."],
      context: {
        intentId: "transfer",
        intentName: "Transfer to an agent",
        confidenceScore: 1,
        action: "TRANSFER",
        actionParameters: { skill: process.env.TRANSFER_SKILL || "human" },
      },
    });
  }
  if (text === "close" || text === "bye") {
    return callback(null, {
      messages: ["Thank you for chatting with us. Goodbye!"],
      context: { action: "CLOSE_CONVERSATION" },
    });
  }
  if (text === "urgent") {
    return callback(null, {
      messages: ["I marked this conversation as urgent."],
      context: { action: "CHANGE_TTR", actionParameters: { ttrType: "URGENT" } },
    });
  }
  if (text === "options" || text === "help") {
    return callback(null, {
      messages: [quickReplies("Here is what I can do:", ["Card", "Transfer", "Close"])],
    });
  }
  if (text === "card") {
    return callback(null, { messages: [card()] });
  }
  if (message === "") {
    return callback(null, { messages: ["Sorry, I did not get that. Type 'options' to see what I can do."] });
  }
  return callback(null, { messages: ["You said: " + message] });
}
)JS";

constexpr std::string_view kCustomIntegrationSample = R"JSON({
  "timestamp": 1700000000000,
  "headers": [],
  "payload": {
    "message": "hi",
    "convId": "c1f2a3b4-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
    "context": {
      "lpEvent": {
        "sequence": 0,
        "serverTimestamp": 1700000000000,
        "dialogId": "c1f2a3b4-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
        "conversationId": "c1f2a3b4-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
        "originatorId": "5e2a7c1d-9f3b-4a8e-b6d0-2c4f6a8b0d1e",
        "originatorMetadata": { "id": "5e2a7c1d-9f3b-4a8e-b6d0-2c4f6a8b0d1e", "role": "CONSUMER" },
        "event": { "type": "ContentEvent", "message": "hi", "contentType": "text/plain" },
        "messageAudience": "ALL",
        "conversationContext": {
          "type": "MESSAGING",
          "skillId": "3410001",
          "visitor": { "sharkVisitorId": "v1a2b3c4d5", "sharkSessionId": "s6e7f8a9b0" }
        }
      },
      "lpSdes": {}
    }
  }
})JSON";

constexpr std::string_view kPreHookCode = R"JS(// Third-Party Bots - Pre Hook
//
// Runs before every call to the bot with the request the connector is about to send
// (Custom Integration: { convId, message, context: { lpEvent, lpSdes } }). Return the request,
// changed or not; the connector sends what you return.

function lambda(input, callback) {
  const request = (input && input.payload) || {};
  if (typeof request.message === "string") {
    // Example: normalise whitespace before the bot sees the text.
    request.message = request.message.replace(/\s+/g, " ").trim();
  }
  console.debug("pre hook", { convId: request.convId });
  callback(null, request);
}
)JS";

constexpr std::string_view kPreHookSample = R"JSON({
  "timestamp": 1700000000000,
  "headers": [],
  "payload": {
    "convId": "c1f2a3b4-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
    "message": "  customer   message ",
    "context": { "lpEvent": {}, "lpSdes": {} }
  }
})JSON";

constexpr std::string_view kPostHookCode = R"JS(// Third-Party Bots - Post Hook
//
// Runs after every bot answer with the bot's response (Custom Integration:
// { messages: [...], context: {...} }). Return the response, changed or not; the connector
// then sends the messages and executes the action of what you return.

function lambda(input, callback) {
  const response = (input && input.payload) || {};
  if (!Array.isArray(response.messages)) response.messages = [];
  if (!response.context) response.context = {};
  // Example: mark responses that carry an action.
  if (response.context.action) {
    console.info("bot requested an action", { action: response.context.action });
  }
  callback(null, response);
}
)JS";

constexpr std::string_view kPostHookSample = R"JSON({
  "timestamp": 1700000000000,
  "headers": [],
  "payload": {
    "messages": ["You said: hi"],
    "context": {}
  }
})JSON";

constexpr std::string_view kErrorHookCode = R"JS(// Third-Party Bots - Error Hook
//
// Runs when the bot hits an error, with { error: { errorId, name }, vendor, faasPayload, faas }.
// Nothing you return is fed back into the conversation: use it to log or to alert.

function lambda(input, callback) {
  const payload = (input && input.payload) || {};
  const error = payload.error || {};
  console.error("bot error", {
    errorId: error.errorId,
    name: error.name,
    vendor: payload.vendor,
    convId: payload.faasPayload && payload.faasPayload.convId,
  });
  callback(null, {});
}
)JS";

constexpr std::string_view kErrorHookSample = R"JSON({
  "timestamp": 1700000000000,
  "headers": [],
  "payload": {
    "error": {
      "errorId": "com.liveperson.bot-connectors-worker.error.aivendor.faas.missing-response-body",
      "name": "FaasMissingResponseBody"
    },
    "vendor": "CUSTOM_INTEGRATION",
    "faasPayload": {
      "convId": "c1f2a3b4-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
      "message": "hi",
      "context": { "lpEvent": {}, "lpSdes": {} }
    },
    "faas": {}
  }
})JSON";

constexpr std::string_view kGreetingCode = R"JS(// Greeting
//
// A function without an event: it runs only when invoked directly (test invoke, the INVOCATION
// action of a bot, or the CLI). input = { timestamp, headers: [{ key, value }], payload }.

function lambda(input, callback) {
  const payload = (input && input.payload) || {};
  const name = typeof payload.name === "string" && payload.name ? payload.name : "World";
  console.info("greeting", { name: name });
  callback(null, { greeting: "Hello " + name + "!" });
}
)JS";

constexpr std::string_view kGreetingSample = R"JSON({
  "timestamp": 1700000000000,
  "headers": [],
  "payload": { "name": "Parley" }
})JSON";

}  // namespace

const std::vector<EventInfo>& knownEvents() {
  static const std::vector<EventInfo> events = {
      {"bot_connectors_custom_integration", "Third-Party Bots Custom Integration"},
      {"bot_connectors_pre_hook", "Third-Party Bots Pre Hook"},
      {"bot_connectors_post_hook", "Third-Party Bots Post Hook"},
      {"bot_connectors_error_hook", "Third-Party Bots Error Hook"},
      {"no_event", "No Event"},
      {"denver_post_survey_email_transcript", "Chat Post Survey E-Mail Transcript"},
      {"conversational_command", "Conversational Command"},
      {"controllerbot_messaging_new_conversation", "Messaging New Conversation"},
      {"controllerbot_messaging_ttr", "Messaging TTR"},
      {"controllerbot_messaging_participants_change", "Messaging Participants Change"},
      {"controllerbot_messaging_conversation_idle", "Messaging Conversation Idle"},
      {"controllerbot_messaging_conversation_routing", "Messaging Conversation Routing"},
      {"controllerbot_messaging_mid_conversation_msg", "Messaging Line in Off-Hours"},
      {"controllerbot_messaging_conversation_end", "Messaging Conversation End"},
      {"surveybot_messaging_survey_started", "Messaging Survey Started"},
      {"surveybot_messaging_survey_ended", "Messaging Survey Ended"},
  };
  return events;
}

bool isKnownEvent(std::string_view event_id) {
  const auto& e = knownEvents();
  return std::any_of(e.begin(), e.end(), [&](const EventInfo& x) { return x.id == event_id; });
}

const std::vector<Template>& allTemplates() {
  static const std::vector<Template> templates = {
      {"bot_connectors_custom_integration", "Default Template", std::string(kCustomIntegrationCode),
       std::string(kCustomIntegrationSample)},
      {"bot_connectors_pre_hook", "Default Template", std::string(kPreHookCode),
       std::string(kPreHookSample)},
      {"bot_connectors_post_hook", "Default Template", std::string(kPostHookCode),
       std::string(kPostHookSample)},
      {"bot_connectors_error_hook", "Default Template", std::string(kErrorHookCode),
       std::string(kErrorHookSample)},
      {"no_event", "Greeting", std::string(kGreetingCode), std::string(kGreetingSample)},
  };
  return templates;
}

Template templateFor(std::string_view event_id) {
  for (const auto& t : allTemplates())
    if (t.event == event_id) return t;
  Template t = allTemplates().back();  // Greeting
  t.event = std::string(event_id);
  return t;
}

}  // namespace parley::functions
