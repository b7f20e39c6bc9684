#pragma once

// Private helpers shared by the store implementations (memory/ and sqlite/). Not part of the
// store contract; other subsystems must not include this header.

#include <spdlog/spdlog.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace parley::store::internal {

// Hands an asynchronous write its outcome (the SQLite and PostgreSQL writers, as the leader):
// what the callback throws is logged, never thrown into the writer.
inline void completeAsyncWrite(const std::function<void(Status)>& done, Status result) {
  try {
    done(std::move(result));
  } catch (const std::exception& e) {
    spdlog::error("store write callback threw: {}", e.what());
  } catch (...) {
    spdlog::error("store write callback threw a non-exception");
  }
}

// Leases' (conversation, epoch) pairs as a JSON array of {"c": id, "e": epoch}: the one parameter
// of the SQLite and PostgreSQL stores' one-statement renewal and release of a node's leases.
inline std::string leasePairsJson(const std::vector<Lease>& leases) {
  boost::json::array pairs;
  pairs.reserve(leases.size());
  for (const auto& l : leases)
    pairs.push_back(boost::json::object{{"c", l.conversation.str()}, {"e", l.epoch}});
  return boost::json::serialize(pairs);
}

// The value of a purely numeric id ("1000" -> 1000); nullopt for anything else.
inline std::optional<std::int64_t> numericId(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// The arguments of acquireLease / renewLease.
inline Status checkLeaseArgs(const ConversationId& id, const std::string& node, TimeMs ttl_ms) {
  if (id.empty()) return invalid("a lease needs a conversation id");
  if (node.empty()) return invalid("a lease needs a node name");
  if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
  return {};
}

// Why a fenced write was refused: `holder` is the lease stored for the conversation, if any.
inline Status fenceRefused(const Conversation& c, const std::optional<Lease>& holder) {
  if (!holder)
    return makeError(ErrorCode::kUnavailable, "conversation " + c.id.str() +
                                                  " has no lease (node " + c.fence.node +
                                                  " wrote without one)");
  return makeError(ErrorCode::kUnavailable,
                   "conversation " + c.id.str() + " is owned by node " + holder->node +
                       " at epoch " + std::to_string(holder->epoch) + ", not by node " +
                       c.fence.node + " at epoch " + std::to_string(c.fence.epoch));
}

// Why a conversation write was refused by the one-open-conversation rule (store.h): `c` is
// open and its consumer already has the open conversation `open` in the account.
inline Status openConversationTaken(const Conversation& c, const std::string& open) {
  return conflict("consumer " + c.consumer.str() + " already has an open conversation " + open +
                  " in account " + c.account.str());
}

// Why eraseConversationContent was refused: the conversation is missing, or it is open.
inline Status erasureMissing(const AccountId& acc, const ConversationId& id) {
  return notFound("conversation " + id.str() + " does not exist in account " + acc.str());
}
inline Status erasureOfOpen(const ConversationId& id) {
  return conflict("conversation " + id.str() +
                  " is open; its content can be erased only once it is closed");
}

// Why acquireLease was refused.
inline Status leaseHeld(const Lease& holder) {
  return conflict("conversation " + holder.conversation.str() + " is leased by node " +
                  holder.node + " (epoch " + std::to_string(holder.epoch) + ") until " +
                  std::to_string(holder.expires_at));
}

// True when a context property has expired at `now` (0 = never expires).
inline bool expired(const ContextProperty& p, TimeMs now) {
  return p.expires_at != 0 && p.expires_at <= now;
}

// appendMessage(c, m): `c` must be the conversation as this message leaves it — its
// next_sequence the message's sequence + 1 and its updated_at the message's server_ts (what
// the conversation engine passes). The SQLite store relies on it: an append writes only the
// message, and reads take the counters from the conversation's last message.
inline Status checkAppendCounters(const Conversation& c, const Message& m) {
  if (c.next_sequence != m.sequence + 1)
    return invalid("appending message " + std::to_string(m.sequence) + " to conversation " +
                   c.id.str() + ": the conversation's next_sequence must be " +
                   std::to_string(m.sequence + 1) + ", not " + std::to_string(c.next_sequence));
  if (c.updated_at != m.server_ts)
    return invalid("appending message " + std::to_string(m.sequence) + " to conversation " +
                   c.id.str() +
                   ": the conversation's updated_at must be the message's server_ts (" +
                   std::to_string(m.server_ts) + "), not " + std::to_string(c.updated_at));
  return {};
}

// Why appendMessage refused a message whose idempotency key was already used.
inline Status duplicateKey(const Conversation& c, const Message& m) {
  return conflict("conversation " + c.id.str() + " already holds a message of " + m.originator_id +
                  " with idempotency key '" + m.idempotency_key + "'");
}

}  // namespace parley::store::internal
