#pragma once

// The SQLite ClusterStore: cluster material and conversation leases (one node's, so leases
// only matter to tests and to a node that fences its own writes). Private to store/sqlite.

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Cluster material on the shared Db. Thread-safe (see Db); owned by the SqliteStore.
class SqliteClusterStore final : public ClusterStore {
 public:
  // REQUIRES: `db` outlives this.
  explicit SqliteClusterStore(Db& db) : db_(db) {}

  // ClusterStore
  Result<std::string> putMaterialIfAbsent(const std::string& key,
                                          const std::string& value) override;
  Result<std::string> getMaterial(const std::string& key) override;
  Result<Lease> acquireLease(const ConversationId& id, const std::string& node,
                             TimeMs ttl_ms) override;
  Result<Lease> renewLease(const ConversationId& id, const std::string& node, std::int64_t epoch,
                           TimeMs ttl_ms) override;
  Status releaseLease(const ConversationId& id, const std::string& node,
                      std::int64_t epoch) override;
  Status releaseLeases(const std::string& node, const std::vector<Lease>& held) override;
  Result<Lease> getLease(const ConversationId& id) override;
  Result<std::vector<Lease>> claimLeases(const std::string& node, TimeMs ttl_ms,
                                         int limit) override;

 private:
  Db& db_;
};

// Inside a conversation write: Ok for an unfenced write or one whose fence holds the lease,
// else Unavailable (Conversation::fence).
Status checkFence(Conn& c, const Conversation& conv);

}  // namespace parley::store::sqlite
