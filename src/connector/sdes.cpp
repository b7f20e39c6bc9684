#include "connector/sdes.h"

#include <fmt/format.h>

#include <string_view>

namespace parley::connector {

namespace bj = boost::json;

namespace {

struct SdeType {
  std::string_view type;  // the Engagement Attributes API type
  std::string_view key;   // the lpSdes key
  std::string_view wrap;  // the API's wrapper field unwrapped into the body ("" = none)
};

constexpr SdeType kTypes[] = {
    {"ctmrinfo", "customerInfo", "info"},
    {"personal", "personalInfo", "personal"},
    {"cart", "cartStatus", ""},
    {"purchase", "purchase", ""},
    {"prodView", "viewedProduct", ""},
    {"mrktInfo", "marketingCampaignInfo", "info"},
    {"lead", "lead", "lead"},
    {"service", "serviceActivity", "service"},
    {"error", "visitorError", "error"},
    {"searchInfo", "searchInfo", ""},
};

const SdeType* typeOf(const bj::object& sde) {
  auto t = sde.find("type");
  if (t == sde.end() || !t->value().is_string()) return nullptr;
  for (const auto& k : kTypes)
    if (t->value().as_string() == k.type) return &k;
  return nullptr;
}

// The typed body of one SDE: its fields without `type`, `serverTimeStamp`, or the content of the
// API's wrapper field.
bj::object bodyOf(const bj::object& sde, const SdeType& t) {
  if (!t.wrap.empty())
    if (auto w = sde.find(t.wrap); w != sde.end() && w->value().is_object())
      return w->value().as_object();
  bj::object body;
  for (const auto& kv : sde)
    if (kv.key() != "type" && kv.key() != "serverTimeStamp") body[kv.key()] = kv.value();
  return body;
}

// Merges `from` into `into`: a null never overwrites a non-null value; objects merge
// recursively; anything else is replaced.
void mergeInto(bj::object& into, const bj::object& from) {
  for (const auto& kv : from) {
    auto it = into.find(kv.key());
    if (it == into.end()) {
      into[kv.key()] = kv.value();
    } else if (kv.value().is_null()) {
      continue;
    } else if (kv.value().is_object() && it->value().is_object()) {
      mergeInto(it->value().as_object(), kv.value().as_object());
    } else {
      it->value() = kv.value();
    }
  }
}

const bj::array* sdeArray(const bj::object& o, std::initializer_list<std::string_view> keys) {
  for (auto k : keys)
    if (auto it = o.find(k); it != o.end() && it->value().is_array())
      return &it->value().as_array();
  return nullptr;
}

// Merged bodies by SDE type, in first-seen order.
std::vector<std::pair<const SdeType*, bj::object>> mergeByType(const bj::array& sdes) {
  std::vector<std::pair<const SdeType*, bj::object>> out;
  for (const auto& v : sdes) {
    if (!v.is_object()) continue;
    const SdeType* t = typeOf(v.as_object());
    if (!t) continue;
    bj::object body = bodyOf(v.as_object(), *t);
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& e) { return e.first == t; });
    if (it == out.end())
      out.emplace_back(t, std::move(body));
    else
      mergeInto(it->second, body);
  }
  return out;
}

std::string stringField(const bj::object& o, std::initializer_list<std::string_view> keys) {
  for (auto k : keys)
    if (auto it = o.find(k);
        it != o.end() && it->value().is_string() && !it->value().as_string().empty())
      return std::string(it->value().as_string());
  return "";
}

bj::object parseObject(const std::string& text) {
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec);
  return !ec && v.is_object() ? v.as_object() : bj::object{};
}

// Merges the reported events (store::sdeEvent form: {sdeType, serverTimeStamp, <key>:{
// serverTimeStamp, <key>:{...} | fields}}) into `unauth`, oldest first.
void mergeReported(bj::object& unauth, const bj::array& reported) {
  for (const auto& v : reported) {
    if (!v.is_object()) continue;
    for (const auto& kv : v.as_object()) {
      if (kv.key() == "sdeType" || kv.key() == "serverTimeStamp" || !kv.value().is_object())
        continue;
      // The Messaging Interactions API calls searchInfo's entry searchContent.
      std::string_view key = kv.key() == "searchContent" ? "searchInfo" : kv.key();
      const SdeType* t = nullptr;
      for (const auto& k : kTypes)
        if (k.key == key) t = &k;
      if (!t) continue;
      const bj::object& inner = kv.value().as_object();
      bj::object body;
      if (!t->wrap.empty()) {
        if (auto b = inner.find(t->key); b != inner.end() && b->value().is_object())
          body = b->value().as_object();
      } else {
        for (const auto& f : inner)
          if (f.key() != "serverTimeStamp") body[f.key()] = f.value();
      }
      bj::value ts = inner.contains("serverTimeStamp") ? inner.at("serverTimeStamp") : bj::value();
      auto it = unauth.find(t->key);
      if (it == unauth.end() || !it->value().is_object()) {
        unauth[t->key] = bj::object{{"serverTimeStamp", ts}, {t->key, std::move(body)}};
        continue;
      }
      bj::object& entry = it->value().as_object();
      if (auto b = entry.find(t->key); b != entry.end() && b->value().is_object())
        mergeInto(b->value().as_object(), body);
      else
        entry[t->key] = std::move(body);
      if (!ts.is_null()) entry["serverTimeStamp"] = ts;
    }
  }
}

}  // namespace

SdesResult buildLpSdes(const store::Conversation& conv,
                       const std::optional<std::string>& profile_json, long long now_ms,
                       const bj::array& reported) {
  SdesResult r;
  const bool chat = conv.channel == store::Channel::kChat;
  const std::string ts = std::to_string(now_ms);

  // Unauthenticated: the visit's SDEs, looked up by visitor and session id.
  bj::object unauth;
  bj::object ctx = parseObject(conv.context_json);
  bj::object visitor;
  if (auto v = ctx.find("visitor"); v != ctx.end() && v->value().is_object())
    visitor = v->value().as_object();
  std::string visitor_id = stringField(ctx, {"sharkVisitorId", "visitorId"});
  if (visitor_id.empty()) visitor_id = stringField(visitor, {"sharkVisitorId", "visitorId"});
  std::string session_id = stringField(ctx, {"sharkSessionId", "sessionId"});
  if (session_id.empty()) session_id = stringField(visitor, {"sharkSessionId", "sessionId"});
  if (visitor_id.empty() || session_id.empty()) {
    r.problems.emplace_back(
        codes::kSdesMissingIds,
        fmt::format("the conversation context has no {} (sharkVisitorId/visitorId and "
                    "sharkSessionId/sessionId): unauthenticated engagement attributes cannot be "
                    "looked up",
                    visitor_id.empty() && session_id.empty() ? "visitor or session id"
                    : visitor_id.empty()                     ? "visitor id"
                                                             : "session id"));
    // What functions reported is kept by conversation: no ids needed.
    mergeReported(unauth, reported);
  } else {
    const bj::array* sdes = sdeArray(ctx, {"lp_sdes", "sdes", "engagementAttributes"});
    for (auto& [t, body] : mergeByType(sdes ? *sdes : bj::array{}))
      unauth[t->key] = bj::object{{"serverTimeStamp", ts}, {t->key, std::move(body)}};
    mergeReported(unauth, reported);
    if (unauth.empty())
      r.problems.emplace_back(
          codes::kSdesUauthEmpty,
          fmt::format("no unauthenticated engagement attribute was reported for visitor {} "
                      "session {}",
                      visitor_id, session_id));
  }

  // Authenticated: the consumer's profile (SetUserProfile authenticatedData.lp_sdes).
  bj::object auth;
  if (profile_json) {
    bj::object profile = parseObject(*profile_json);
    const bj::array* sdes = nullptr;
    std::string iss = "parley";
    if (auto ad = profile.find("authenticatedData"); ad != profile.end() && ad->value().is_object())
      sdes = sdeArray(ad->value().as_object(), {"lp_sdes"});
    if (auto cl = profile.find("claims"); cl != profile.end() && cl->value().is_object()) {
      if (!sdes) sdes = sdeArray(cl->value().as_object(), {"lp_sdes"});
      if (auto s = stringField(cl->value().as_object(), {"iss"}); !s.empty()) iss = s;
    }
    std::string acr = stringField(profile, {"acr"});
    if (acr.empty()) acr = "loa1";
    for (auto& [t, body] : mergeByType(sdes ? *sdes : bj::array{})) {
      if (chat && t->type == "ctmrinfo") {
        bj::object info{{"isUserAuthenticated", true}, {"participantId", conv.consumer.str()}};
        mergeInto(info, body);
        auth["authenticatedParticipantInfo"] = std::move(info);
      } else if (chat && t->type == "personal") {
        bj::object info{{"name", body.contains("firstname") ? body["firstname"] : bj::value()},
                        {"surname", body.contains("lastname") ? body["lastname"] : bj::value()},
                        {"contacts", body.contains("contacts") ? body["contacts"] : bj::array{}}};
        auth["authenticatedPersonalInfo"] = std::move(info);
      } else {
        auth[t->key] = bj::object{{"type", t->type},
                                  {"acr", acr},
                                  {"iss", iss},
                                  {t->key, std::move(body)},
                                  {"auth", bj::object{}}};
      }
    }
  }
  r.lp_sdes = bj::object{{"unauthenticatedSdes", std::move(unauth)},
                         {"authenticatedSdes", std::move(auth)}};
  return r;
}

}  // namespace parley::connector
