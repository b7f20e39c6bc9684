#include "store/engagement_attributes.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "common/json.h"
#include "common/random.h"

namespace parley::store {

namespace bj = boost::json;

namespace {

struct SdeKind {
  std::string_view type;      // the Engagement Attributes API type
  std::string_view sde_type;  // the Messaging Interactions API sdeType
  std::string_view key;       // the event's key
  std::string_view wrap;      // the API's wrapper field ("" = the fields sit in the SDE itself)
};

constexpr SdeKind kKinds[] = {
    {"cart", "CART_STATUS", "cartStatus", ""},
    {"purchase", "PURCHASE", "purchase", ""},
    {"prodView", "VIEWED_PRODUCT", "viewedProduct", ""},
    {"ctmrinfo", "CUSTOMER_INFO", "customerInfo", "info"},
    {"mrktInfo", "MARKETING_CAMPAIGN_INFO", "marketingCampaignInfo", "info"},
    {"personal", "PERSONAL_INFO", "personalInfo", "personal"},
    {"lead", "LEAD", "lead", "lead"},
    {"service", "SERVICE_ACTIVITY", "serviceActivity", "service"},
    {"error", "VISITOR_ERROR", "visitorError", "error"},
    {"searchInfo", "SEARCH_CONTENT", "searchContent", ""},
};

const SdeKind* kindOf(std::string_view type) {
  for (const auto& k : kKinds)
    if (k.type == type) return &k;
  return nullptr;
}

std::string typeList() {
  std::string out;
  for (auto t : kSdeTypes) {
    if (!out.empty()) out += ", ";
    out += t;
  }
  return out;
}

// Why one SDE is refused, or "" when it passes.
std::string problemOf(const bj::value& v) {
  if (!v.is_object()) return "is not an object";
  const auto& o = v.as_object();
  auto t = o.find("type");
  if (t == o.end() || !t->value().is_string())
    return fmt::format("has no string 'type' (one of {}; Toolbelt SDETypes)", typeList());
  const SdeKind* k = kindOf(t->value().as_string());
  if (!k)
    return fmt::format("has unknown type '{}' (one of {}; Toolbelt SDETypes)",
                       std::string_view(t->value().as_string()), typeList());
  if (!k->wrap.empty()) {
    auto w = o.find(k->wrap);
    if (w == o.end() || !w->value().is_object())
      return fmt::format(
          "of type '{}' carries its fields in an object '{}' (e.g. {{type:'{}', "
          "{}:{{...}}}})",
          k->type, k->wrap, k->type, k->wrap);
  }
  if (k->type == "searchInfo") {
    if (auto kw = o.find("keywords"); kw != o.end()) {
      if (!kw->value().is_array()) return "of type 'searchInfo' needs 'keywords' as an array";
      for (const auto& x : kw->value().as_array())
        if (!x.is_string()) return "of type 'searchInfo' needs 'keywords' as an array of strings";
    }
  }
  return {};
}

const bj::array* contextArray(const bj::object& o) {
  for (std::string_view k : {"lp_sdes", "sdes", "engagementAttributes"})
    if (auto it = o.find(k); it != o.end() && it->value().is_array())
      return &it->value().as_array();
  return nullptr;
}

}  // namespace

Status checkSdes(const bj::value& sdes) {
  if (!sdes.is_array())
    return invalid(
        "sdes must be an array of engagement attributes, e.g. [{type:'personal', personal:{...}}]");
  const auto& arr = sdes.as_array();
  if (arr.empty()) return invalid("sdes is empty: give at least one engagement attribute");
  if (arr.size() > kMaxSdesPerCall)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("sdes has {} entries; at most {} are accepted in one call",
                                 arr.size(), kMaxSdesPerCall));
  const std::size_t bytes = bj::serialize(sdes).size();
  if (bytes > kMaxSdesCallBytes)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("sdes is {} bytes of JSON; at most {} are accepted in one call",
                                 bytes, kMaxSdesCallBytes));
  for (std::size_t i = 0; i < arr.size(); ++i)
    if (auto p = problemOf(arr[i]); !p.empty()) return invalid(fmt::format("sdes[{}] {}", i, p));
  return {};
}

std::optional<bj::object> sdeEvent(const bj::object& sde, TimeMs ts) {
  if (!problemOf(sde).empty()) return std::nullopt;
  const SdeKind& k = *kindOf(sde.at("type").as_string());
  bj::object inner{{"serverTimeStamp", std::to_string(ts)}};
  if (!k.wrap.empty()) {
    inner[k.key] = sde.at(k.wrap);
  } else {
    for (const auto& kv : sde)
      if (kv.key() != "type" && kv.key() != "serverTimeStamp") inner[kv.key()] = kv.value();
  }
  return bj::object{{"sdeType", k.sde_type}, {"serverTimeStamp", ts}, {k.key, std::move(inner)}};
}

bj::array contextSdeEvents(std::string_view context_json, TimeMs ts) {
  bj::array out;
  auto ctx = json::parseObject(context_json);
  if (!ctx) return out;
  const bj::array* arr = contextArray(*ctx);
  if (!arr) return out;
  for (const auto& v : *arr) {
    if (!v.is_object()) continue;
    if (auto e = sdeEvent(v.as_object(), ts)) out.emplace_back(std::move(*e));
  }
  return out;
}

Status appendReportedSdes(FunctionStore& store, const AccountId& account,
                          const ConversationId& conversation, const bj::array& sdes, TimeMs now) {
  if (auto st = checkSdes(sdes); !st) return st;
  auto stored =
      store.listContextProperties(account, std::string(kSdeNamespace), conversation.str());
  if (!stored) return std::unexpected(stored.error());
  std::size_t count = 0;
  for (const auto& p : *stored)
    if (auto v = json::parse(p.value_json); v && v->is_array()) count += v->as_array().size();
  if (count + sdes.size() > kMaxSdeEventsPerConversation)
    return makeError(
        ErrorCode::kLimitExceeded,
        fmt::format("conversation {} holds {} reported engagement attributes; at most "
                    "{} are kept per conversation, so these {} were not added",
                    conversation.str(), count, kMaxSdeEventsPerConversation, sdes.size()));
  bj::array events;
  for (const auto& s : sdes) events.emplace_back(*sdeEvent(s.as_object(), now));
  ContextProperty p;
  p.account = account;
  p.ns = std::string(kSdeNamespace);
  p.session_id = conversation.str();
  // Sorts by time, then by how many entries were stored before it; the random part keeps racing
  // calls apart.
  p.name = fmt::format("{:015d}-{:05d}-{}", now, stored->size(), randomHex(6));
  p.value_json = bj::serialize(events);
  return store.putContextProperty(p);
}

Result<bj::array> reportedSdeEvents(FunctionStore& store, const AccountId& account,
                                    const ConversationId& conversation) {
  auto stored =
      store.listContextProperties(account, std::string(kSdeNamespace), conversation.str());
  if (!stored) return std::unexpected(stored.error());
  std::sort(stored->begin(), stored->end(),
            [](const ContextProperty& a, const ContextProperty& b) { return a.name < b.name; });
  bj::array out;
  for (const auto& p : *stored) {
    auto v = json::parse(p.value_json);
    if (!v || !v->is_array()) continue;
    for (auto& e : v->as_array()) out.emplace_back(std::move(e));
  }
  return out;
}

}  // namespace parley::store
