#include "functions/engine/protocol.h"

namespace parley::functions::engine {

InvokeResult errorResult(std::string_view code, std::string message) {
  InvokeResult r;
  r.ok = false;
  r.error_code = std::string(code);
  r.error_message = std::move(message);
  return r;
}

namespace proto {

using wire::Msg;
using wire::Reader;
using wire::Writer;

namespace {

std::int64_t ns(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
SteadyTime fromNs(std::int64_t v) {
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(std::chrono::nanoseconds(v)));
}
Status bad(std::string_view what) {
  return makeError(ErrorCode::kInternal, "malformed " + std::string(what) + " frame");
}

}  // namespace

std::string init(const WorkerConfig& c) {
  Writer w(Msg::kInit);
  w.u64(c.heap_limit_mb)
      .u64(c.max_contexts_per_isolate)
      .u64(c.max_timers_per_invocation)
      .i64(c.deploy_deadline.count())
      .i64(c.cpu_limit.count())
      .i64(c.long_task.count())
      .i64(c.guest_context_idle.count())
      .u8(c.probes ? 1 : 0)
      .u32(static_cast<std::uint32_t>(c.libs.size()));
  for (auto& [name, src] : c.libs) w.str(name).str(src);
  return w.take();
}

Result<WorkerConfig> parseInit(std::string_view payload) {
  Reader r(payload);
  WorkerConfig c;
  c.heap_limit_mb = r.u64();
  c.max_contexts_per_isolate = r.u64();
  c.max_timers_per_invocation = r.u64();
  c.deploy_deadline = std::chrono::milliseconds(r.i64());
  c.cpu_limit = std::chrono::milliseconds(r.i64());
  c.long_task = std::chrono::milliseconds(r.i64());
  c.guest_context_idle = std::chrono::milliseconds(r.i64());
  c.probes = r.u8() != 0;
  std::uint32_t n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    std::string name = r.str();
    c.libs[name] = r.str();
  }
  if (!r.ok()) return std::unexpected(bad("init").error());
  return c;
}

std::string deployment(const Deployment& d, bool current) {
  Writer w(Msg::kDeployment);
  w.u64(d.id)
      .str(d.account.str())
      .str(d.function.str())
      .str(d.key)
      .i64(d.version)
      .u8((d.ephemeral ? 1 : 0) | (current ? 2 : 0))
      .str(d.code)
      .u32(static_cast<std::uint32_t>(d.env.size()));
  for (auto& e : d.env) w.str(e.key).str(e.value);
  return w.take();
}

Result<std::shared_ptr<Deployment>> parseDeployment(std::string_view payload, bool* current) {
  Reader r(payload);
  auto d = std::make_shared<Deployment>();
  d->id = r.u64();
  d->account = AccountId(r.str());
  d->function = FunctionId(r.str());
  d->key = r.str();
  d->version = r.i64();
  std::uint8_t flags = r.u8();
  d->ephemeral = (flags & 1) != 0;
  *current = (flags & 2) != 0;
  d->code = r.str();
  std::uint32_t n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    store::EnvVar e;
    e.key = r.str();
    e.value = r.str();
    d->env.push_back(std::move(e));
  }
  if (!r.ok()) return std::unexpected(bad("deployment").error());
  return d;
}

std::string drop(const std::string& key, std::uint64_t current) {
  return Writer(Msg::kDrop).str(key).u64(current).take();
}

std::string unhome(const std::string& key) { return Writer(Msg::kUnhome).str(key).take(); }

std::string forget(std::uint64_t deployment) { return Writer(Msg::kForget).u64(deployment).take(); }

std::string prepare(std::uint64_t request, std::uint64_t deployment, bool keep) {
  return Writer(Msg::kPrepare).u64(request).u64(deployment).u8(keep ? 1 : 0).take();
}

std::string job(const Task& t) {
  return Writer(Msg::kJob)
      .u64(t.id)
      .u64(t.deployment->id)
      .u8(t.mode == InvokeMode::kTest ? 1 : 0)
      .u8(t.home ? 1 : 0)
      .i64(ns(t.start))
      .i64(ns(t.deadline))
      .i64(t.budget_ms)
      .str(t.input_json)
      .take();
}

bool parseJob(std::string_view payload, Task* t, std::uint64_t* deployment_id) {
  Reader r(payload);
  t->id = r.u64();
  *deployment_id = r.u64();
  t->mode = r.u8() ? InvokeMode::kTest : InvokeMode::kProduction;
  t->home = r.u8() != 0;
  t->start = fromNs(r.i64());
  t->deadline = fromNs(r.i64());
  t->budget_ms = r.i64();
  t->input_json = r.str();
  return r.ok();
}

std::string hostCall(std::uint64_t invocation, std::uint64_t call, std::string_view op,
                     std::string_view args_json) {
  return Writer(Msg::kHostCall).u64(invocation).u64(call).str(op).str(args_json).take();
}

std::string hostReply(std::uint64_t invocation, std::uint64_t call, std::string_view json) {
  return Writer(Msg::kHostReply).u64(invocation).u64(call).str(json).take();
}

std::string prepared(std::uint64_t request, const Status& s) {
  Writer w(Msg::kPrepared);
  w.u64(request);
  if (s) {
    w.u8(0).str("");
  } else {
    w.u8(static_cast<std::uint8_t>(static_cast<int>(s.error().code) + 1)).str(s.error().message);
  }
  return w.take();
}

Status parsePrepared(std::string_view payload, std::uint64_t* request) {
  Reader r(payload);
  *request = r.u64();
  int code = r.u8();
  std::string message = r.str();
  if (!r.ok()) return bad("prepared");
  if (code == 0) return {};
  return makeError(static_cast<ErrorCode>(code - 1), std::move(message));
}

std::string result(std::uint64_t invocation, const InvokeResult& res) {
  Writer w(Msg::kResult);
  w.u64(invocation)
      .u8(res.ok ? 1 : 0)
      .str(res.result_json)
      .str(res.error_code)
      .str(res.error_message)
      .f64(res.cpu_ms)
      .u32(static_cast<std::uint32_t>(res.logs.size()));
  for (auto& l : res.logs) w.str(l.level).str(l.message).str(l.extras_json).i64(l.ts);
  return w.take();
}

bool parseResult(std::string_view payload, std::uint64_t* invocation, InvokeResult* res) {
  Reader r(payload);
  *invocation = r.u64();
  res->ok = r.u8() != 0;
  res->result_json = r.str();
  res->error_code = r.str();
  res->error_message = r.str();
  res->cpu_ms = r.f64();
  std::uint32_t n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    LogEntry l;
    l.level = r.str();
    l.message = r.str();
    l.extras_json = r.str();
    l.ts = r.i64();
    res->logs.push_back(std::move(l));
  }
  return r.ok();
}

std::string busy(std::string_view account) { return Writer(Msg::kBusy).str(account).take(); }

std::string ids(wire::Msg type, const std::vector<std::uint64_t>& ids) {
  Writer w(type);
  w.u32(static_cast<std::uint32_t>(ids.size()));
  for (auto id : ids) w.u64(id);
  return w.take();
}

std::vector<std::uint64_t> parseIds(std::string_view payload) {
  Reader r(payload);
  std::vector<std::uint64_t> out;
  std::uint32_t n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) out.push_back(r.u64());
  if (!r.ok()) out.clear();
  return out;
}

}  // namespace proto
}  // namespace parley::functions::engine
