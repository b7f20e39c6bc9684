#pragma once

// Engagement attributes (SDEs) of a conversation, as LivePerson's Engagement Attributes API takes
// them and as its Messaging Interactions API shows them (`sdes` / `unAuthSdes`, each
// `{events:[...]}`).
//
// Two sources:
// - Attributes a function reported with Toolbelt.SDEUtil().addSDEs (the brand's own code, the
//   function's account): kept in the function store's context properties, namespace
//   kSdeNamespace, session = the conversation id, one property per call (so concurrent calls
//   never overwrite each other), and shown as `sdes`.
// - The engagement attributes the consumer sent with its conversation request
//   (`conversationContext.lp_sdes`, `sdes` or `engagementAttributes`): unauthenticated, shown as
//   `unAuthSdes` with the conversation's start time.
//
// Pure functions plus two calls that block on the store (readers: any thread; the caller
// chooses where blocking work runs).

#include <boost/json.hpp>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::store {

// The context-property namespace the attributes are kept in (the context service refuses user
// namespaces starting with "__parley").
inline constexpr std::string_view kSdeNamespace = "__parley.sdes";
// At most this many SDEs in one addSDEs call.
inline constexpr std::size_t kMaxSdesPerCall = 20;
// At most this many bytes of JSON for the SDEs of one call (as the conversationContext limit).
inline constexpr std::size_t kMaxSdesCallBytes = 16 * 1024;
// At most this many reported SDE events kept per conversation; more are refused.
inline constexpr std::size_t kMaxSdeEventsPerConversation = 200;

// The Engagement Attributes API's SDE types (Toolbelt SDETypes), in the order of §4.10.
inline constexpr std::string_view kSdeTypes[] = {"cart",     "purchase",  "prodView", "ctmrinfo",
                                                 "mrktInfo", "personal",  "lead",     "service",
                                                 "error",    "searchInfo"};

// Checks SDEs in the Engagement Attributes API form: an array of 1..kMaxSdesPerCall objects
// (kMaxSdesCallBytes of JSON at most), each with a known `type`; types whose fields sit in a
// wrapper object (ctmrinfo and mrktInfo: `info`, personal: `personal`, lead: `lead`, service:
// `service`, error: `error`) must carry it as an object; `searchInfo.keywords`, if present, an
// array of strings. Invalid (TooLarge for size and count) with a message naming the index and
// field otherwise.
Status checkSdes(const boost::json::value& sdes);

// One Messaging Interactions API event for a checked SDE reported at `ts`:
//   {"sdeType":"CUSTOMER_INFO","serverTimeStamp":ts,
//    "customerInfo":{"serverTimeStamp":"<ts>","customerInfo":{...the wrapper's fields}}}
// and for types without a wrapper (cart, purchase, prodView, searchInfo) the fields themselves
// sit beside serverTimeStamp ("cartStatus":{"serverTimeStamp":"<ts>","total":..}).
// Keys: ctmrinfo→customerInfo, personal→personalInfo, cart→cartStatus, purchase→purchase,
// prodView→viewedProduct, mrktInfo→marketingCampaignInfo, lead→lead, service→serviceActivity,
// error→visitorError, searchInfo→searchContent. nullopt for an SDE that does not pass checkSdes.
std::optional<boost::json::object> sdeEvent(const boost::json::object& sde, TimeMs ts);

// The unAuthSdes events of a conversation: the SDEs of its conversationContext (arrays under
// `lp_sdes`, `sdes` or `engagementAttributes`) that pass the checks, stamped `ts`.
boost::json::array contextSdeEvents(std::string_view context_json, TimeMs ts);

// Stores checked `sdes` reported at `now` for a conversation of `account` as one entry.
// LimitExceeded when the conversation would hold more than kMaxSdeEventsPerConversation events
// (the count is read first, so calls racing near the limit may pass it by a few). Blocks.
Status appendReportedSdes(FunctionStore& store, const AccountId& account,
                          const ConversationId& conversation, const boost::json::array& sdes,
                          TimeMs now);

// The reported events of a conversation, oldest first (by serverTimeStamp, then the order the
// calls were stored). Blocks.
Result<boost::json::array> reportedSdeEvents(FunctionStore& store, const AccountId& account,
                                             const ConversationId& conversation);

}  // namespace parley::store
