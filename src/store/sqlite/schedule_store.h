#pragma once

// The SQLite ScheduleStore: function schedules and the bookkeeping of their runs. Private to
// store/sqlite.

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Schedules (`schedules`, schema version 11) on the shared Db. Claims and run ends are
// compare-and-set updates inside one write, so racing claimers get exactly one winner.
// Thread-safe (see Db); owned by the SqliteStore.
class SqliteScheduleStore final : public ScheduleStore {
 public:
  // REQUIRES: `db` outlives this.
  explicit SqliteScheduleStore(Db& db) : db_(db) {}

  // ScheduleStore
  Status createSchedule(const Schedule& s) override;
  Status updateSchedule(const Schedule& s) override;
  Status deleteSchedule(const AccountId& acc, const std::string& id) override;
  Result<Schedule> getSchedule(const AccountId& acc, const std::string& id) override;
  Result<std::vector<Schedule>> listSchedules(const AccountId& acc) override;
  Result<std::vector<Schedule>> listDueSchedules(TimeMs now, int limit) override;
  Status claimScheduleRun(const ScheduleClaim& c) override;
  Status skipScheduleRuns(const AccountId& acc, const std::string& id, TimeMs due_at,
                          TimeMs next_run_at, TimeMs now) override;
  Status finishScheduleRun(const ScheduleRunEnd& e) override;

 private:
  Db& db_;
};

}  // namespace parley::store::sqlite
