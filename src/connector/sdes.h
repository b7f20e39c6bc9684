#pragma once

// Engagement attributes (SDEs) for `context.lpSdes` of the function input (spec §1.4, §1.6):
// built when the bot takes a conversation (and again when its inputs change, see the connector
// README "context.lpSdes"), from the consumer's authenticated profile
// (`userprofile.SetUserProfile` `authenticatedData.lp_sdes`) and the unauthenticated SDEs and
// visitor ids of the conversation's stored context, and the SDEs functions reported for the
// conversation (read by the caller). Pure: no I/O.

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace parley::connector {

// Connector error codes of the SDE service (prefix com.liveperson.bot-connectors-worker.error.).
namespace codes {
inline constexpr const char* kSdesMissingIds = "sdes-service.missing-session-or-visitor-id";
inline constexpr const char* kSdesUauthEmpty = "sdes-service.uauth-sdes-entry-is-empty";
}  // namespace codes

struct SdesResult {
  // {unauthenticatedSdes:{...}, authenticatedSdes:{...}}: both keys always present.
  boost::json::object lp_sdes;
  // The SDE-service errors met (codes above, without the prefix) with a human message each;
  // they are recorded on the turn and do not stop it.
  std::vector<std::pair<std::string, std::string>> problems;
};

// Builds lpSdes.
// - `profile_json`: the consumer's profile as the protocol hub keeps it
//   (`{authenticatedData:{lp_sdes:[{type, <body>}...]}, ...}`), or nullopt when the consumer set
//   none. Authenticated SDEs are keyed by channel (§1.6): messaging `customerInfo` /
//   `personalInfo` as `{type, acr, iss, customerInfo|personalInfo:{...}, auth:{}}` (other SDE
//   types under their unauthenticated key); chat `authenticatedParticipantInfo` (from ctmrinfo)
//   and `authenticatedPersonalInfo` (from personal).
// - `conv.context_json` (conversationContext): the visitor ids (`sharkVisitorId`/`visitorId`,
//   `sharkSessionId`/`sessionId`, top level or under `visitor`) and the unauthenticated SDEs as
//   an array under `lp_sdes`, `sdes` or `engagementAttributes` (Engagement Attributes API
//   form). Missing ids → kSdesMissingIds and `unauthenticatedSdes:{}`; ids but no entry →
//   kSdesUauthEmpty and `{}`.
// SDE type → key: ctmrinfo→customerInfo, personal→personalInfo, cart→cartStatus,
// purchase→purchase, prodView→viewedProduct, mrktInfo→marketingCampaignInfo, lead→lead,
// service→serviceActivity, error→visitorError, searchInfo→searchInfo. Entries of the same type
// are merged in order; a later `null` never overwrites an earlier non-null value (objects merge
// recursively). Entries that are not objects or have an unknown type are skipped.
// - `reported`: the events a function stored for the conversation with SDEUtil.addSDEs
//   (store::reportedSdeEvents, oldest first). Parley's session is the conversation, so they
//   need no visitor or session id: each merges into the unauthenticated entry of its type after
//   the conversationContext's (same rules), and the entry's serverTimeStamp becomes the report's.
SdesResult buildLpSdes(const store::Conversation& conv,
                       const std::optional<std::string>& profile_json, long long now_ms,
                       const boost::json::array& reported = {});

}  // namespace parley::connector
