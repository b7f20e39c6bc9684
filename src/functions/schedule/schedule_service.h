#pragma once

// The REST resource `schedules` (the root README's API section): cron schedules of an account's
// functions, run by the FunctionScheduler (scheduler.h). LivePerson's management API creates them
// with `POST /schedules {lambdaUUID, cronExpression, isActive, uuid:""}` (bot-connector-spec
// §4.15); the same body works here.
//
//   GET    schedules[?lambdaUUID=<uuid>]     the account's schedules, oldest first
//   POST   schedules {lambdaUUID, cronExpression, isActive?, payload?}          -> 201
//   GET    schedules/{uuid}
//   PUT    schedules/{uuid} {cronExpression?, isActive?, payload?}  (PATCH too)
//   DELETE schedules/{uuid}
//
// Roles: the policy's schedules.* rows (ADMIN, FAAS_ADMIN, FAAS_DEVELOPER). Limits (LivePerson's
// where it has one): at most 10 functions of an account have schedules, at most 10 schedules per
// function, a payload of at most 8,000 characters of JSON, an expression of at most 200.
//
// Ownership: main owns it (shared with the server); `store` and `clock` must outlive it.
// Threading: thread-safe; handle() only queues: store work runs on the service's own executor,
// which calls `done`. Creations in one account are serialised (the limits are checked and the
// row written under one lock). The destructor answers later requests with 503 and drains.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "common/thread_annotations.h"
#include "functions/service/executor.h"
#include "store/store.h"

namespace parley::functions::schedule {

struct ScheduleServiceOptions {
  // Functions of one account that may have schedules. Default: 10 (LivePerson's limit).
  int max_scheduled_functions_per_account = 10;
  // Schedules of one function. Default: 10.
  int max_schedules_per_function = 10;
  // Largest payload, in characters of JSON. Default: 8,000 (LivePerson's limit).
  std::size_t max_payload_chars = 8000;
};

class ScheduleService final : public api::Handler {
 public:
  ScheduleService(store::Store& store, const Clock& clock, ScheduleServiceOptions options = {});
  ~ScheduleService() override;
  ScheduleService(const ScheduleService&) = delete;
  ScheduleService& operator=(const ScheduleService&) = delete;

  // api::Handler
  std::vector<std::string> resources() const override { return {"schedules"}; }
  void handle(api::Request request, std::function<void(api::Response)> done) override;

  // Blocks until queued requests are answered.
  void waitIdleForTest();

 private:
  api::Response route(const api::Request& req);
  api::Response list(const api::Request& req);
  api::Response create(const api::Request& req);
  api::Response get(const api::Request& req, const std::string& id);
  api::Response update(const api::Request& req, const std::string& id);
  api::Response remove(const api::Request& req, const std::string& id);

  store::Store& store_;
  const Clock& clock_;
  const ScheduleServiceOptions options_;
  std::atomic<bool> stopping_{false};
  // Serialises creations (limit check + insert); one lock for all accounts keeps it simple and
  // creations are rare.
  Mutex create_mu_;
  // Last member: destroyed (drained and joined) first.
  std::unique_ptr<service::Executor> executor_;
};

}  // namespace parley::functions::schedule
