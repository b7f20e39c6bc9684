#include "store/sqlite/schedule_store.h"

#include <string>
#include <vector>

#include "store/sqlite/query.h"
#include "store/sqlite/rows.h"

namespace parley::store::sqlite {
namespace {

constexpr const char* kScheduleCols =
    "account, id, function_uuid, cron, state, payload_json, next_run_at, running_id, "
    "running_until, last_due_at, last_started_at, last_finished_at, last_outcome, last_error, "
    "last_duration_ms, created_by, created_at, updated_at";

Schedule scheduleRow(Query& q) {
  Schedule s;
  s.account = AccountId(q.text(0));
  s.id = q.text(1);
  s.function = FunctionId(q.text(2));
  s.cron = q.text(3);
  s.state = parseScheduleState(q.text(4)).value_or(ScheduleState::kPaused);
  s.payload_json = q.text(5);
  s.next_run_at = q.i64(6);
  s.running_id = q.text(7);
  s.running_until = q.i64(8);
  s.last_due_at = q.i64(9);
  s.last_started_at = q.i64(10);
  s.last_finished_at = q.i64(11);
  s.last_outcome = q.text(12);
  s.last_error = q.text(13);
  s.last_duration_ms = q.i64(14);
  s.created_by = q.text(15);
  s.created_at = q.i64(16);
  s.updated_at = q.i64(17);
  return s;
}

std::string scheduleMissing(const AccountId& acc, const std::string& id) {
  return "schedule " + id + " does not exist in account " + acc.str();
}

// Conflict when the schedule exists but the compare-and-set found it changed; NotFound when
// it is gone.
Status takenOrMissing(Conn& c, const AccountId& acc, const std::string& id) {
  auto there = exists(c, "SELECT 1 FROM schedules WHERE account=? AND id=?", acc.str(), id);
  if (!there) return std::unexpected(there.error());
  if (!*there) return notFound(scheduleMissing(acc, id));
  return conflict("schedule " + id + " in account " + acc.str() +
                  " was claimed, edited or is running");
}

}  // namespace

Status SqliteScheduleStore::createSchedule(const Schedule& s) {
  if (s.account.empty()) return invalid("schedule account is required");
  if (s.id.empty()) return invalid("schedule id is required");
  if (s.function.empty()) return invalid("schedule function is required");
  if (s.cron.empty()) return invalid("schedule cron expression is required");
  const TimeMs created = s.created_at ? s.created_at : db_.now();
  const TimeMs updated = s.updated_at ? s.updated_at : created;
  return db_.write([&](Conn& c) -> Status {
    auto fn = exists(c, "SELECT 1 FROM functions WHERE uuid=? AND account=?", s.function.str(),
                     s.account.str());
    if (!fn) return std::unexpected(fn.error());
    if (!*fn)
      return notFound("function " + s.function.str() + " does not exist in account " +
                      s.account.str());
    return conflictAs(
        asStatus(execute(c,
                         "INSERT INTO schedules(" + std::string(kScheduleCols) +
                             ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         s.account.str(), s.id, s.function.str(), s.cron,
                         std::string(scheduleStateName(s.state)), s.payload_json, s.next_run_at,
                         s.running_id, s.running_until, s.last_due_at, s.last_started_at,
                         s.last_finished_at, s.last_outcome, s.last_error, s.last_duration_ms,
                         s.created_by, created, updated)),
        "schedule " + s.id + " already exists in account " + s.account.str());
  });
}

Status SqliteScheduleStore::updateSchedule(const Schedule& s) {
  const TimeMs updated = s.updated_at ? s.updated_at : db_.now();
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c,
                "UPDATE schedules SET cron=?, state=?, payload_json=?, next_run_at=?, "
                "updated_at=? WHERE account=? AND id=?",
                s.cron, std::string(scheduleStateName(s.state)), s.payload_json, s.next_run_at,
                updated, s.account.str(), s.id),
        scheduleMissing(s.account, s.id));
  });
}

Status SqliteScheduleStore::deleteSchedule(const AccountId& acc, const std::string& id) {
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c, "DELETE FROM schedules WHERE account=? AND id=?", acc.str(), id),
        scheduleMissing(acc, id));
  });
}

Result<Schedule> SqliteScheduleStore::getSchedule(const AccountId& acc, const std::string& id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<Schedule>(
        c, "SELECT " + std::string(kScheduleCols) + " FROM schedules WHERE account=? AND id=?",
        scheduleRow, acc.str(), id);
  });
  return found(std::move(r), scheduleMissing(acc, id));
}

Result<std::vector<Schedule>> SqliteScheduleStore::listSchedules(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<Schedule>(c,
                               "SELECT " + std::string(kScheduleCols) +
                                   " FROM schedules WHERE account=? ORDER BY created_at, rowid",
                               scheduleRow, acc.str());
  });
}

Result<std::vector<Schedule>> SqliteScheduleStore::listDueSchedules(TimeMs now, int limit) {
  return db_.read([&](Conn& c) {
    return selectAll<Schedule>(
        c,
        "SELECT " + std::string(kScheduleCols) +
            " FROM schedules WHERE state='ACTIVE' AND next_run_at>0 AND next_run_at<=? AND "
            "running_until<=? ORDER BY next_run_at, rowid LIMIT ?",
        scheduleRow, now, now, static_cast<std::int64_t>(limit));
  });
}

Status SqliteScheduleStore::claimScheduleRun(const ScheduleClaim& cl) {
  return db_.write([&](Conn& c) -> Status {
    auto n = execute(c,
                     "UPDATE schedules SET running_id=?, running_until=?, last_due_at=?, "
                     "last_started_at=?, next_run_at=? WHERE account=? AND id=? AND "
                     "state='ACTIVE' AND next_run_at=? AND running_until<=?",
                     cl.run_id, cl.running_until, cl.due_at, cl.now, cl.next_run_at,
                     cl.account.str(), cl.id, cl.due_at, cl.now);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return takenOrMissing(c, cl.account, cl.id);
    return {};
  });
}

Status SqliteScheduleStore::skipScheduleRuns(const AccountId& acc, const std::string& id,
                                             TimeMs due_at, TimeMs next_run_at, TimeMs now) {
  return db_.write([&](Conn& c) -> Status {
    auto n = execute(c,
                     "UPDATE schedules SET next_run_at=? WHERE account=? AND id=? AND "
                     "state='ACTIVE' AND next_run_at=? AND running_until<=?",
                     next_run_at, acc.str(), id, due_at, now);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return takenOrMissing(c, acc, id);
    return {};
  });
}

Status SqliteScheduleStore::finishScheduleRun(const ScheduleRunEnd& e) {
  return db_.write([&](Conn& c) -> Status {
    auto n =
        execute(c,
                "UPDATE schedules SET running_id='', running_until=0, last_finished_at=?, "
                "last_outcome=?, last_error=?, last_duration_ms=? WHERE account=? AND id=? "
                "AND running_id=? AND running_id<>''",
                e.finished_at, e.outcome, e.error, e.duration_ms, e.account.str(), e.id, e.run_id);
    if (!n) return std::unexpected(n.error());
    if (*n > 0) return {};
    auto there =
        exists(c, "SELECT 1 FROM schedules WHERE account=? AND id=?", e.account.str(), e.id);
    if (!there) return std::unexpected(there.error());
    if (!*there) return notFound(scheduleMissing(e.account, e.id));
    return conflict("schedule " + e.id + " is no longer claimed by run " + e.run_id);
  });
}

}  // namespace parley::store::sqlite
