#pragma once

// What the nodes of a cluster must share besides the database: the TLS CA and leaf (so one `ca`
// works behind a balancer), the consumer JWT key (a JWT from one node works on all) and the
// secrets key (a secret stored by one node is read by all). Each lives in the store as cluster
// material; a node keeps a copy in its data directory, where the server and the function
// platform load it from as in a single node.

#include <string>

#include "common/result.h"
#include "store/store.h"

namespace parley::app {

// Whether the node's TLS material is the cluster's (generated, shared) or brought by the
// operator (--tls-cert/--tls-key, or no HTTPS listener): brought material is left alone.
enum class SharedTls { kShared, kBrought };

// For each of DIR/tls/{ca.pem,ca-key.pem,cert.pem,key.pem} (with SharedTls::kShared),
// DIR/keys/jwt.key and DIR/keys/secrets.key: makes the local copy if missing (as a single node
// would), offers it to the store (ClusterStore::putMaterialIfAbsent), and when the store already
// held another one (an earlier node's) writes that one over the local files (key files mode
// 0600, each file replaced atomically). Afterwards every node that called this has the same
// files. Blocking; call before the server and the function platform load them.
Status shareClusterMaterial(store::ClusterStore& cluster, const std::string& data_dir,
                            SharedTls tls);

}  // namespace parley::app
