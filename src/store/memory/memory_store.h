#pragma once

// An in-memory Store: the fake for unit tests of every subsystem above the store. It honours the
// same contracts as the SQLite store (Conflict on duplicates, NotFound, id assignment, ordering,
// account isolation) and is checked by the same contract suite (store/store_test.cpp).
// Thread-safe: one mutex guards all state. Nothing survives destruction.

#include <memory>

#include "common/clock.h"
#include "store/store.h"

namespace parley::store {

// Creates an empty in-memory store. `clock` fills timestamps that the caller left 0 and decides
// when context properties expire; it must outlive the store. schemaVersion() is 0.
std::unique_ptr<Store> makeMemoryStore(const Clock& clock);

}  // namespace parley::store
