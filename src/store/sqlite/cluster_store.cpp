#include "store/sqlite/cluster_store.h"

#include <string>
#include <vector>

#include "store/sqlite/query.h"
#include "store/store_util.h"

namespace parley::store::sqlite {
namespace {

Result<std::optional<Lease>> leaseIn(Conn& c, const ConversationId& id) {
  return selectOne<Lease>(
      c, "SELECT node, epoch, expires_at FROM conversation_leases WHERE conversation=?",
      [&](Query& q) {
        return Lease{id, q.text(0), q.i64(1), q.i64(2)};
      },
      id.str());
}

}  // namespace

Status checkFence(Conn& c, const Conversation& conv) {
  if (conv.fence.empty()) return {};
  auto l = leaseIn(c, conv.id);
  if (!l) return std::unexpected(l.error());
  if (*l && (*l)->fence() == conv.fence) return {};
  return internal::fenceRefused(conv, *l);
}

Result<Lease> SqliteClusterStore::acquireLease(const ConversationId& id, const std::string& node,
                                               TimeMs ttl_ms) {
  if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st) return std::unexpected(st.error());
  const TimeMs now = db_.now();
  Lease out;
  Status st = db_.write([&](Conn& c) -> Status {
    auto l = leaseIn(c, id);
    if (!l) return std::unexpected(l.error());
    out = l->value_or(Lease{id, node, 0, 0});
    const bool taken = !l->has_value() || out.expires_at <= now;
    if (!taken && out.node != node) return internal::leaseHeld(out);
    if (taken) ++out.epoch;
    out.node = node;
    out.expires_at = now + ttl_ms;
    return asStatus(execute(c,
                            "INSERT OR REPLACE INTO conversation_leases(conversation, node, "
                            "epoch, expires_at) VALUES(?,?,?,?)",
                            id.str(), out.node, out.epoch, out.expires_at));
  });
  if (!st) return std::unexpected(st.error());
  return out;
}

Result<Lease> SqliteClusterStore::renewLease(const ConversationId& id, const std::string& node,
                                             std::int64_t epoch, TimeMs ttl_ms) {
  if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st) return std::unexpected(st.error());
  const TimeMs now = db_.now();
  Lease out;
  Status st = db_.write([&](Conn& c) -> Status {
    auto l = leaseIn(c, id);
    if (!l) return std::unexpected(l.error());
    if (!*l) return conflict("conversation " + id.str() + " has no lease");
    out = **l;
    if (out.node != node || out.epoch != epoch) return internal::leaseHeld(out);
    out.expires_at = now + ttl_ms;
    return asStatus(execute(c, "UPDATE conversation_leases SET expires_at=? WHERE conversation=?",
                            out.expires_at, id.str()));
  });
  if (!st) return std::unexpected(st.error());
  return out;
}

Status SqliteClusterStore::releaseLease(const ConversationId& id, const std::string& node,
                                        std::int64_t epoch) {
  const TimeMs now = db_.now();
  return db_.write([&](Conn& c) {
    return asStatus(execute(c,
                            "UPDATE conversation_leases SET expires_at=min(expires_at, ?) WHERE "
                            "conversation=? AND node=? AND epoch=?",
                            now, id.str(), node, epoch));
  });
}

// One statement for the batch: the held (conversation, epoch) pairs as a JSON array, matched
// with json_each; only the rows still at the node and epoch expire.
Status SqliteClusterStore::releaseLeases(const std::string& node, const std::vector<Lease>& held) {
  if (node.empty()) return invalid("a lease needs a node name");
  if (held.empty()) return {};
  const std::string json = internal::leasePairsJson(held);
  const TimeMs now = db_.now();
  return db_.write([&](Conn& c) {
    return asStatus(execute(
        c,
        "UPDATE conversation_leases SET expires_at=min(expires_at, ?) WHERE node=? AND "
        "(conversation, epoch) IN (SELECT json_extract(value, '$.c'), json_extract(value, '$.e') "
        "FROM json_each(?))",
        now, node, json));
  });
}

Result<Lease> SqliteClusterStore::getLease(const ConversationId& id) {
  return found(db_.read([&](Conn& c) { return leaseIn(c, id); }),
               "conversation " + id.str() + " was never leased");
}

Result<std::vector<Lease>> SqliteClusterStore::claimLeases(const std::string& node, TimeMs ttl_ms,
                                                           int limit) {
  if (node.empty()) return invalid("a lease needs a node name");
  if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
  if (limit <= 0) return invalid("a lease claim needs a positive limit");
  const TimeMs now = db_.now();
  std::vector<Lease> taken;
  Status st = db_.write([&](Conn& c) -> Status {
    taken.clear();
    auto free = selectAll<Lease>(
        c,
        "SELECT c.id, coalesce(l.epoch, 0) FROM conversations c LEFT JOIN conversation_leases l "
        "ON l.conversation = c.id WHERE c.state = 'OPEN' AND (l.conversation IS NULL OR "
        "l.expires_at <= ?) ORDER BY c.start_ts, c.id LIMIT ?",
        [&](Query& q) {
          return Lease{ConversationId(q.text(0)), node, q.i64(1) + 1, now + ttl_ms};
        },
        now, limit);
    if (!free) return std::unexpected(free.error());
    for (auto& l : *free) {
      PARLEY_STORE_TRY(asStatus(execute(c,
                                        "INSERT OR REPLACE INTO conversation_leases(conversation, "
                                        "node, epoch, expires_at) VALUES(?,?,?,?)",
                                        l.conversation.str(), l.node, l.epoch, l.expires_at)));
      taken.push_back(std::move(l));
    }
    return {};
  });
  if (!st) return std::unexpected(st.error());
  return taken;
}

Result<std::string> SqliteClusterStore::putMaterialIfAbsent(const std::string& key,
                                                            const std::string& value) {
  if (key.empty()) return invalid("cluster material needs a key");
  std::string stored;
  Status st = db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(asStatus(
        execute(c, "INSERT OR IGNORE INTO cluster_material(key, value, created_at) VALUES(?,?,?)",
                key, value, db_.now())));
    auto r = found(selectOne<std::string>(
                       c, "SELECT value FROM cluster_material WHERE key=?",
                       [](Query& q) { return q.text(0); }, key),
                   "no cluster material '" + key + "'");
    if (!r) return std::unexpected(r.error());
    stored = std::move(*r);
    return {};
  });
  if (!st) return std::unexpected(st.error());
  return stored;
}

Result<std::string> SqliteClusterStore::getMaterial(const std::string& key) {
  return found(db_.read([&](Conn& c) {
    return selectOne<std::string>(
        c, "SELECT value FROM cluster_material WHERE key=?", [](Query& q) { return q.text(0); },
        key);
  }),
               "no cluster material '" + key + "'");
}

}  // namespace parley::store::sqlite
