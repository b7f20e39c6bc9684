#include "connector/bot_service.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/json.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/random.h"
#include "common/thread_name.h"
#include "connector/input.h"
#include "connector/response.h"
#include "connector/sdes.h"
#include "conversation/engine_pool.h"

namespace parley::connector {

namespace bj = boost::json;
namespace asio = boost::asio;
namespace conv = parley::conversation;
using Strand = conv::ConversationStrand;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr const char* kCodePrefix = "com.liveperson.bot-connectors-worker.error.";

api::Response errorResponse(const Error& e) {
  bj::object err{{"code", errorCodeName(e.code)}, {"message", e.message}};
  return api::Response{httpStatus(e.code), bj::serialize(bj::object{{"error", std::move(err)}})};
}

double msSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

// Whether an invocation error code means that the platform could not run the function at all
// (spec §4.6: everything that is not a "FaaSLambdaError" — not deployed, deleted, runtime
// unavailable or overloaded, bad input) as opposed to the function's own failure (a
// `com.liveperson.faas.handler.*` code, V2 `com.customer.faas.function.*`, the log limit).
bool platformFailure(std::string_view code) {
  if (!code.starts_with("com.liveperson.faas.")) return false;
  if (code.starts_with("com.liveperson.faas.handler.")) return false;
  if (code == "com.liveperson.faas.function.runtime.limit-reached") return false;
  return true;
}

// Platform failures that say the function is not there: no point waiting for more of them.
bool functionGone(std::string_view code) {
  return code == "com.liveperson.faas.es.notdeployed" ||
         code == "com.liveperson.faas.es.missinglambda" ||
         code == "com.liveperson.faas.function.not-found";
}

// Entries of the account image allowlist (spec §2.6 `messaging.rich.content.valid.urls`, "no
// wildcards"): a host name or IP address compared exactly with the image URL's host, or an
// https:// URL prefix. At most kMaxImageAllowlist entries of at most 2048 characters, no
// duplicates.
constexpr std::size_t kMaxImageAllowlist = 200;

Result<std::vector<std::string>> parseImageAllowlist(const bj::object& body) {
  auto it = body.find("entries");
  if (it == body.end() || !it->value().is_array())
    return invalid(
        "field 'entries' is required: an array of image hosts (\"img.example.com\") or https:// "
        "URL prefixes (\"https://cdn.example.com/images/\")");
  const bj::array& a = it->value().as_array();
  if (a.size() > kMaxImageAllowlist)
    return invalid(fmt::format("field 'entries' has {} entries; at most {} are allowed", a.size(),
                               kMaxImageAllowlist));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].is_string()) return invalid(fmt::format("entries[{}] must be a string", i));
    std::string e(a[i].as_string());
    auto bad = [&](std::string_view why) {
      return invalid(fmt::format("entries[{}] \"{}\" {}", i, e.substr(0, 100), why));
    };
    if (e.empty() || e.size() > 2048) return bad("must be 1 to 2048 characters");
    if (e.find('*') != std::string::npos)
      return bad("has a wildcard; wildcards are not supported, list every host");
    for (char ch : e)
      if (std::isspace(static_cast<unsigned char>(ch)) ||
          std::iscntrl(static_cast<unsigned char>(ch)))
        return bad("contains white space or control characters");
    if (e.find("://") != std::string::npos) {
      auto u = boost::urls::parse_uri(e);
      if (!u || u->scheme() != "https" || u->encoded_host().empty())
        return bad("must be an https:// URL with a host (images are only allowed over HTTPS)");
    } else {
      if (e.size() > 253) return bad("is not a host name (at most 253 characters)");
      bool ok = true;
      std::size_t label = 0;
      for (char ch : e) {
        if (ch == '.') {
          ok = ok && label > 0;
          label = 0;
        } else if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-') {
          ok = ok && ++label <= 63;
        } else {
          ok = false;
        }
      }
      if (!ok || label == 0)
        return bad(
            "is neither a host name (letters, digits, '-' and '.'; no port, no path) nor an "
            "https:// URL prefix");
    }
    for (const auto& prev : out)
      if (prev == e) return bad("is listed twice");
    out.push_back(std::move(e));
  }
  return out;
}

// Parses JSON text the connector built itself (a turn's input, an event) — which may nest a
// function's or hook's output (up to the parser's default depth) a few levels deeper — without
// throwing: an error value, never an exception, and a JSON object or an error.
Result<bj::value> parseOwn(std::string_view text) {
  bj::parse_options opts;
  opts.max_depth = 64;
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec, {}, opts);
  if (ec) return invalid("not readable JSON: " + ec.message());
  if (!v.is_object()) return invalid("not a JSON object");
  return v;
}

std::string botUserLogin(const std::string& name) {
  std::string s = "bot.";
  for (char c : name)
    s += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
  return s + "." + randomHex(3);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// State

// A bot that is not OFFLINE. Guarded by Impl::mu_ except the immutable fields.
struct BotRuntime {
  AccountId account;
  BotId id;
  store::User user;  // the bot user (id, pid)
  // Replaced whole (never changed in place), so a turn can keep the one it started with.
  std::shared_ptr<const BotConfig> config = std::make_shared<const BotConfig>();
  std::string status = "ONLINE";
  // Consecutive turns that failed because of the function or its response (→ VENDOR_INTERRUPTION).
  int consecutive_failures = 0;
  // Consecutive invocations the platform could not run (→ SERVICE_INTERRUPTION).
  int platform_failures = 0;
  std::string last_platform_error;
  // Pending recovery check while in SERVICE_INTERRUPTION.
  std::shared_ptr<asio::steady_timer> probe_timer;
  // Open conversations the bot holds (ACTIVE ASSIGNED_AGENT), for the open-conversation limit.
  std::unordered_set<std::string> held;
};

// What a finished turn tells about the bot's health.
enum class TurnHealth { kSuccess, kFunctionFailure, kPlatformFailure, kNotCounted };

struct Metrics {
  std::map<std::pair<std::string, std::string>, std::uint64_t> turns;  // (bot, outcome)
  std::map<std::string, std::uint64_t> escalations;
  std::map<std::string, std::uint64_t> discarded;
  std::map<std::string, double> invoke_ms_sum;
  std::map<std::string, std::uint64_t> invoke_count;
  std::map<std::string, std::uint64_t> retries;
  std::map<std::pair<std::string, std::string>, std::uint64_t> inactivity;  // (bot, warning|close)
  std::map<std::string, std::uint64_t> limit_reached;
  std::map<std::pair<std::string, std::string>, std::uint64_t> hook_failures;  // (bot, hook)
  // Exceptions caught by the conversation strand's fence (a bug, or a throwing dependency).
  std::map<std::string, std::uint64_t> turn_exceptions;
  // Open conversations handed on when their bot was stopped.
  std::map<std::string, std::uint64_t> handed_off;
};

struct Turn {
  std::string id;
  TurnInput input;
  std::uint64_t epoch = 0;
  std::shared_ptr<BotRuntime> bot;
  std::shared_ptr<const BotConfig> config;  // snapshot at turn start
  std::string input_json;
  std::string response_json;
  int attempts = 0;
  bj::array actions;
  std::string error;
  std::string outcome;
  // How the turn's failure counts for the bot's health (set where it failed).
  TurnHealth failure_kind = TurnHealth::kFunctionFailure;
  std::string platform_error;  // the platform's error code when failure_kind is kPlatformFailure
  // The escalation has started (its messages may be out): the fence does not escalate again.
  bool escalating = false;
  // Durable turns (those answering consumer messages or a WELCOME; not the synthetic ones)
  // carry a store::TurnMark on every message they publish: consumer messages up to `through`
  // are answered once the turn is done. `effects` numbers the stored effects; the first `skip`
  // were stored before a crash interrupted this turn and are not published again.
  bool durable = false;
  std::int64_t through = -1;
  int effects = 0;
  int skip = 0;
  // The turn's done mark has committed (with its last message, or through markTurn).
  bool done_marked = false;
  // The turn moved the conversation away (transfer, close): nothing is left to mark.
  bool handed_off = false;
  // Index in the plan's steps of the message that carries the done mark (the last message when
  // the action, if any, stores nothing of its own: INVOCATION).
  std::optional<std::size_t> done_step;
  SteadyClock::time_point t_start = SteadyClock::now();
  SteadyClock::time_point t_invoke;
  double invoke_ms = 0;
  double hook_ms = 0;
  double queued_ms = 0;
  TimeMs ts = 0;
  std::vector<Problem> refused;
};

struct ConvState {
  explicit ConvState(Strand s) : strand(std::move(s)) {}
  Strand strand;
  // All below: only on `strand`.
  AccountId account;
  ConversationId id;
  store::Conversation snapshot;
  std::shared_ptr<BotRuntime> bot;
  bool owned = false;
  // joined_at of the bot's ACTIVE ASSIGNED_AGENT entry: the turn marks of this assignment.
  TimeMs assigned_at = 0;
  std::uint64_t epoch = 0;
  bool catching_up = false;
  std::vector<std::pair<ConsumerMessage, InputKind>> buffered;  // consumer content, classified
  std::int64_t last_seq = -1;
  std::deque<std::pair<TurnInput, SteadyClock::time_point>> queue;
  bool turn_running = false;
  // The turn that set `turn_running` (the fence ends it when an exception escapes).
  std::shared_ptr<Turn> current;
  bool combine_armed = false;
  bool combine_ready = false;
  std::shared_ptr<asio::steady_timer> timer;
  // Engagement attributes, built once when the bot first runs a turn here (spec §1.4).
  std::optional<SdesResult> sdes;
  // The bot took this conversation beyond its open-conversation limit: escalate it at once.
  bool limit_escalation = false;
  // Chat inactivity (warning, then close); `idle_gen` invalidates a timer that already fired.
  std::shared_ptr<asio::steady_timer> idle_timer;
  std::uint64_t idle_gen = 0;
};

struct BotService::Impl {
  Impl(store::Store& s, conv::ConversationService& c, functions::Runner& r,
       richcontent::Validator v, const Clock& clk, ConnectorOptions o)
      : store(s),
        convs(c),
        runner(r),
        validator(std::move(v)),
        clock(clk),
        opts(std::move(o)),
        pool(static_cast<std::size_t>(std::max(1, opts.threads))) {
    nameThreads([this](auto task) { asio::post(pool, std::move(task)); },
                static_cast<std::size_t>(std::max(1, opts.threads)), "connector");
  }

  store::Store& store;
  conv::ConversationService& convs;
  functions::Runner& runner;
  richcontent::Validator validator;
  const Clock& clock;
  ConnectorOptions opts;
  // REST calls, store calls, probes; and the strands of conversations the engine does not hold
  // open (closed before the connector saw them) or when `convs` is not the engine.
  asio::thread_pool pool;
  conv::Subscription subscription;
  std::atomic<bool> stopped{false};
  // Draining (drain()): no new turn starts. Interrupting (after the drain's deadline, and in
  // stop()): a running turn stops at its next step without publishing more; it stays pending
  // (its done mark was not stored) and runs again at the next start.
  std::atomic<bool> draining{false};
  std::atomic<bool> interrupting{false};
  std::atomic<int> running_turns{0};

  mutable std::mutex mu;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<BotRuntime>> bots;  // (acc, bot)
  std::map<std::pair<std::string, std::string>, std::shared_ptr<BotRuntime>> by_user;
  std::unordered_map<std::string, std::shared_ptr<ConvState>> conversations;
  Metrics metrics;
  // Turn records whose asynchronous write failed (parley_bot_turn_record_failures_total).
  std::atomic<std::uint64_t> turn_record_failures{0};
  // Work in flight (turns, timers, engine calls awaiting completion, turn-record writes not yet
  // committed), for waitIdleForTest and stop().
  std::atomic<int> busy{0};
  // Tasks queued onto a conversation's strand from outside it (a function's result, an engine
  // completion that came from a pool thread, a REST call); work already on the strand runs
  // inline and is not counted. Tests pin the hand-offs of a turn with it.
  std::atomic<std::uint64_t> strand_hand_offs{0};
  std::mutex idle_mu;
  std::condition_variable idle_cv;
  // Inactivity timers run on the engine's strands, which outlive this object: their handlers
  // (also the cancelled ones stop() leaves queued) hold `life` while they run and do nothing
  // once stop() has released it; stop() waits for the ones holding it.
  std::shared_ptr<int> life = std::make_shared<int>(0);

  // ---- helpers -------------------------------------------------------------------------------

  void addBusy() { ++busy; }
  void doneBusy() {
    if (--busy == 0) {
      std::lock_guard l(idle_mu);
      idle_cv.notify_all();
    }
  }

  std::shared_ptr<BotRuntime> botForUser(const AccountId& acc, const std::string& user) {
    std::lock_guard l(mu);
    auto it = by_user.find({acc.str(), user});
    return it == by_user.end() ? nullptr : it->second;
  }

  std::shared_ptr<ConvState> convFor(const ConversationId& id, bool create) {
    std::lock_guard l(mu);
    auto it = conversations.find(id.str());
    if (it != conversations.end()) return it->second;
    if (!create) return nullptr;
    // The engine's own strand of the conversation: the engine emits the conversation's events
    // and calls the completions of its publishes and changes on it, so the connector handles
    // them inline, and one queue orders everything done for the conversation.
    auto strand = conv::conversationStrand(convs, id);
    auto c = std::make_shared<ConvState>(strand ? std::move(*strand) : asio::make_strand(pool));
    c->id = id;
    conversations[id.str()] = c;
    return c;
  }

  // Ends the busy mark of a callback that another service (the engine, the function runner)
  // called, after dropping the callback's conversation state `st`. The other service destroys
  // its copy of the callback after the call returns, maybe after stop() has seen busy reach
  // zero and the threads the conversations' strands belong to are gone; so the callback moves
  // its state out (into the strand task or here) and holds nothing of the connector by then.
  // The strand task itself is destroyed on those threads, before they can be joined. (Such a
  // callback captures `st = st`: a plain capture of a const reference is a const copy, which
  // std::move would copy again instead of emptying.)
  void released(std::shared_ptr<ConvState> st) {
    st.reset();
    doneBusy();
  }

  // Runs `f` on the conversation's strand: at once when the caller is already on it (an engine
  // event or completion of this conversation), else queued after what is there (a hand-off).
  template <class F>
  void onStrand(const std::shared_ptr<ConvState>& c, F&& f) {
    if (c->strand.running_in_this_thread()) {
      addBusy();
      fenced(c, f);
      doneBusy();
      return;
    }
    ++strand_hand_offs;
    addBusy();  // the handler's
    addBusy();  // this call's: the strand copy `defer` makes lives on the calling thread (maybe
                // a function worker) until it returns, and the strand's pool may be lent
    // Deferred: from a thread of the engine's pool the work runs on that thread after the
    // current handler instead of waking another.
    asio::defer(c->strand, [this, c, f = std::forward<F>(f)]() mutable {
      fenced(c, f);
      doneBusy();
    });
    doneBusy();
  }

  // The fence of every task on a conversation's strand: nothing thrown in turn logic escapes
  // into Asio, and a turn the exception interrupted ends visibly — escalated per the bot's
  // policy (recorded with the exception, counted in parley_bot_turn_exceptions_total), or
  // recorded as ERROR when the escalation itself throws — so `turn_running` never stays set
  // and the conversation's next message gets its turn.
  template <class F>
  void fenced(const std::shared_ptr<ConvState>& c, F& f) {
    try {
      f();
    } catch (const std::exception& e) {
      turnException(c, e.what());
    } catch (...) {
      turnException(c, "an exception that is not a std::exception");
    }
  }

  void beginTurn(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
    st->turn_running = true;
    st->current = turn;
    ++running_turns;
  }
  void endTurn(const std::shared_ptr<ConvState>& st) {
    if (!st->turn_running) return;
    st->turn_running = false;
    st->current.reset();
    if (--running_turns == 0) {
      std::lock_guard l(idle_mu);
      idle_cv.notify_all();
    }
  }

  // True (and the turn ended as INTERRUPTED, left pending) once the shutdown interrupts turns.
  bool interrupted(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
    if (!interrupting) return false;
    turn->error =
        "interrupted by the shutdown; the turn is still pending and runs again at the next start";
    complete(st, turn, "INTERRUPTED");
    return true;
  }

  void turnException(const std::shared_ptr<ConvState>& st, const std::string& what) {
    std::string bot = st->bot ? st->bot->id.str() : std::string("-");
    spdlog::error("connector: exception in conversation {} (bot {}): {}", st->id.str(), bot, what);
    {
      std::lock_guard l(mu);
      metrics.turn_exceptions[bot] += 1;
    }
    if (!st->turn_running || !st->current) return;  // no turn was running: logged and counted
    std::shared_ptr<Turn> turn = st->current;
    turn->failure_kind = TurnHealth::kNotCounted;  // the connector's fault, not the function's
    turn->actions.push_back(bj::object{{"kind", "EXCEPTION"},
                                       {"status", "FAILED"},
                                       {"code", std::string(kCodePrefix) + codes::kInternal},
                                       {"message", what}});
    try {
      if (!turn->escalating)
        return escalate(st, turn, codes::kInternal,
                        "the connector failed while handling this turn: " + what);
    } catch (const std::exception& e) {
      spdlog::error("connector: the escalation after an exception threw too: {}", e.what());
    } catch (...) {
    }
    try {
      turn->error = std::string(kCodePrefix) + codes::kInternal + ": " + what;
      if (st->turn_running && st->current == turn) complete(st, turn, "ERROR");
    } catch (...) {
    }
    if (st->current == turn) endTurn(st);
  }

  std::shared_ptr<const BotConfig> configOf(const std::shared_ptr<BotRuntime>& b) const {
    std::lock_guard l(mu);
    return b->config;
  }

  conv::Actor botActor(const BotRuntime& b) const {
    return conv::Actor::ofAgent(b.account, b.user.id, b.user.pid);
  }

  // The account image allowlist: the stored one (BotStore, cached here; loaded at start() and
  // kept current by the REST calls, so reading it never touches the store), else the
  // ConnectorOptions::image_allowlist callback, else none (HTTPS only).
  mutable std::mutex allow_mu;
  std::map<std::string, std::vector<std::string>> stored_allowlists;  // GUARDED_BY(allow_mu)
  // Serialises PUT/DELETE (store write, then cache update) so the cache follows the store's
  // order; readers only take `allow_mu`, never wait for a store write.
  std::mutex allow_write_mu;

  std::optional<std::vector<std::string>> allowlistFor(const AccountId& acc) const {
    {
      std::lock_guard l(allow_mu);
      if (auto it = stored_allowlists.find(acc.str()); it != stored_allowlists.end())
        return it->second;
    }
    return opts.image_allowlist ? opts.image_allowlist(acc) : std::nullopt;
  }

  Status loadAllowlists() {
    auto accounts = store.accounts().listAccounts();
    if (!accounts) return std::unexpected(accounts.error());
    std::map<std::string, std::vector<std::string>> loaded;
    for (const auto& a : *accounts) {
      auto l = store.bots().getImageAllowlist(a.id);
      if (l)
        loaded[a.id.str()] = std::move(*l);
      else if (l.error().code != ErrorCode::kNotFound)
        return std::unexpected(l.error());
    }
    std::lock_guard l(allow_mu);
    stored_allowlists = std::move(loaded);
    return {};
  }

  static std::optional<std::string> assignedAgent(const store::Conversation& c) {
    if (c.state != store::ConversationState::kOpen) return std::nullopt;
    for (const auto& p : c.participants)
      if (p.role == "ASSIGNED_AGENT" && p.state == "ACTIVE") return p.id;
    return std::nullopt;
  }

  // ---- the account skill list, cached (spec §2.4: names resolve through the account's list) --
  //
  // Turns read skills (the chat line's skillName, TRANSFER and escalation targets) from this
  // cache, not from the store. An entry is reloaded when older than kSkillCacheTtl, and on a miss
  // (a skill created since) at most once per kSkillMissReload; bot create/update refresh it.

  static constexpr auto kSkillCacheTtl = std::chrono::seconds(30);
  static constexpr auto kSkillMissReload = std::chrono::seconds(1);
  struct SkillList {
    std::vector<store::Skill> skills;
    SteadyClock::time_point loaded_at;
  };
  std::mutex skills_mu;
  std::map<std::string, SkillList> skill_cache;  // by account; guarded by skills_mu
  std::atomic<std::uint64_t> skill_loads{0};     // store reads of skill lists (tests)

  void putSkills(const AccountId& acc, std::vector<store::Skill> skills) {
    std::lock_guard l(skills_mu);
    skill_cache[acc.str()] = SkillList{std::move(skills), SteadyClock::now()};
  }

  // The first skill of the account matching `pred`, from the cache (reloading per the rules).
  template <class Pred>
  std::optional<store::Skill> findSkill(const AccountId& acc, Pred pred) {
    auto now = SteadyClock::now();
    {
      std::lock_guard l(skills_mu);
      if (auto it = skill_cache.find(acc.str()); it != skill_cache.end()) {
        bool fresh = now - it->second.loaded_at < kSkillCacheTtl;
        for (const auto& s : it->second.skills)
          if (pred(s) && fresh) return s;
        if (fresh && now - it->second.loaded_at < kSkillMissReload) return std::nullopt;
      }
    }
    ++skill_loads;
    auto skills = store.accounts().listSkills(acc);
    if (!skills) {
      spdlog::warn("connector: cannot read the skills of account {}: {}", acc.str(),
                   skills.error().message);
      return std::nullopt;
    }
    std::optional<store::Skill> found;
    for (const auto& s : *skills)
      if (!found && pred(s)) found = s;
    putSkills(acc, std::move(*skills));
    return found;
  }

  std::string skillName(const AccountId& acc, const SkillId& id) {
    auto s = findSkill(acc, [&](const store::Skill& k) { return k.id == id; });
    return s ? s->name : std::string();
  }
  std::optional<SkillId> skillByName(const AccountId& acc, const std::string& name) {
    auto s = findSkill(acc, [&](const store::Skill& k) { return k.name == name; });
    return s ? std::optional<SkillId>(s->id) : std::nullopt;
  }

  // ---- engine events (engine threads) ----------------------------------------------------------

  void conversationChanged(const store::Conversation& c) {
    auto assigned = assignedAgent(c);
    std::shared_ptr<BotRuntime> bot = assigned ? botForUser(c.account, *assigned) : nullptr;
    auto state = convFor(c.id, bot != nullptr);
    if (!state) return;
    onStrand(state, [this, state, c, bot] { handleChange(state, c, bot); });
  }

  // Only a consumer's content starts a turn or counts as activity: every other message (the
  // bot's own, an agent's, a receipt) is dropped here. `e` is the engine's shared event, on the
  // conversation's strand: the turn input holds its message and its parsed event, not copies.
  void messageAdded(const std::shared_ptr<const conv::MessageAdded>& e) {
    const store::Message& m = e->message;
    if (m.originator_role != "CONSUMER") return;
    ConsumerMessage cm =
        e->event ? ConsumerMessage{std::shared_ptr<const store::Message>(e, &m), e->event}
                 : ConsumerMessage::fromStored(m);
    auto kind = classifyConsumerMessage(m, *cm.event);
    if (!kind) return;
    auto state = convFor(m.conversation, false);
    if (!state) return;
    onStrand(state,
             [this, state, cm = std::move(cm), kind = *kind] { handleMessage(state, cm, kind); });
  }

  void ringOffered(const conv::Ring& ring) {
    auto bot = botForUser(ring.account, ring.user.str());
    if (!bot) return;
    addBusy();
    asio::post(pool, [this, bot, ring] {
      std::string status;
      {
        std::lock_guard l(mu);
        status = bot->status;
      }
      auto c = store.conversations().getConversation(ring.account, ring.conversation);
      bool serve = (status == "ONLINE" || status == "VENDOR_INTERRUPTION") && c &&
                   configOf(bot)->servesChannel(c->channel) && !stopped;
      addBusy();
      if (serve) {
        convs.acceptRing(botActor(*bot), ring.ring_id, [this, ring](Result<store::Conversation> r) {
          if (!r)
            spdlog::info("connector: bot could not accept ring {}: {}", ring.ring_id,
                         r.error().message);
          doneBusy();
        });
      } else {
        convs.rejectRing(botActor(*bot), ring.ring_id, [this](Status) { doneBusy(); });
      }
      doneBusy();
    });
  }

  // ---- per conversation (strand) ---------------------------------------------------------------

  void handleChange(const std::shared_ptr<ConvState>& st, const store::Conversation& c,
                    const std::shared_ptr<BotRuntime>& bot) {
    st->account = c.account;
    st->snapshot = c;
    bool now_owned = bot != nullptr;
    if (now_owned && (!st->owned || st->bot != bot)) {
      if (st->owned) release(st);
      st->owned = true;
      st->bot = bot;
      st->assigned_at = 0;
      for (const auto& p : c.participants)
        if (p.id == bot->user.id.str() && p.role == "ASSIGNED_AGENT" && p.state == "ACTIVE")
          st->assigned_at = p.joined_at;
      ++st->epoch;
      st->queue.clear();
      cancelInactivity(st);
      std::size_t held = 0;
      {
        std::lock_guard l(mu);
        bot->held.insert(st->id.str());
        held = bot->held.size();
      }
      if (held > static_cast<std::size_t>(std::max(1, opts.max_open_conversations))) {
        // Spec §3.3: beyond the limit a new conversation is error-escalated at once.
        st->limit_escalation = true;
        pump(st);
      } else {
        catchUp(st);
      }
    } else if (!now_owned && st->owned) {
      release(st);
      st->owned = false;
      ++st->epoch;  // a turn in flight is now stale: its response is discarded
      st->queue.clear();
      st->catching_up = false;
      st->buffered.clear();
      st->limit_escalation = false;
      if (st->timer) st->timer->cancel();
      cancelInactivity(st);
    }
    if (!st->owned && !st->turn_running && c.state == store::ConversationState::kClose) {
      std::lock_guard l(mu);
      conversations.erase(c.id.str());
    }
  }

  void release(const std::shared_ptr<ConvState>& st) {
    if (!st->bot) return;
    std::lock_guard l(mu);
    st->bot->held.erase(st->id.str());
  }

  void catchUp(const std::shared_ptr<ConvState>& st) {
    st->catching_up = true;
    std::uint64_t epoch = st->epoch;
    addBusy();
    convs.listMessages(st->account, st->id, 0, 100000,
                       [this, st = st, epoch](Result<std::vector<store::Message>> r) mutable {
                         auto s = std::move(st);  // see released()
                         onStrand(
                             s, [this, s, epoch, r = std::move(r)] { finishCatchUp(s, epoch, r); });
                         released(std::move(s));
                       });
  }

  // What the bot owes a conversation it takes (or resumes after a restart), derived from the
  // stored messages alone:
  // - When effects of this assignment are stored (messages carrying this bot's turn marks with
  //   this assignment's `assigned_at`, or the conversation's own mark), every consumer message
  //   after the `through` of the last done turn is pending; a turn whose effects are out but
  //   whose done mark is not (a crash or shutdown in the middle) runs again first, with the
  //   same id and the same messages (up to its `through`), publishing only the effects not yet
  //   stored. The pending messages after it are queued one by one and combined by the bot's
  //   usual rule.
  // - Otherwise (the bot has not finished anything here yet) the catch-up rule: every consumer
  //   message after the last agent/bot message, a WELCOME first for chat when the bot never
  //   spoke, or `welcomeAfterTransfer`.
  void finishCatchUp(const std::shared_ptr<ConvState>& st, std::uint64_t epoch,
                     const Result<std::vector<store::Message>>& r) {
    if (epoch != st->epoch || !st->owned) return;
    st->catching_up = false;
    std::vector<store::Message> msgs = r ? *r : std::vector<store::Message>{};
    if (!r)
      spdlog::error("connector: cannot read conversation {} to resume it: {}", st->id.str(),
                    r.error().message);
    std::size_t answered_upto = 0;  // index after the last non-consumer content message
    bool bot_spoke = false, others_spoke = false;
    std::string bot_old_id = st->account.str() + "." + st->bot->user.id.str();
    std::optional<std::string> last_consumer_text;
    struct Partial {
      std::string id;
      std::int64_t through = -1;
      int effects = 0;
    };
    std::optional<std::int64_t> answered;  // `through` of the last done turn
    std::optional<Partial> partial;
    const store::TurnMark& row = st->snapshot.turn_mark;
    if (!row.empty() && row.done && row.assigned_at == st->assigned_at) answered = row.through;
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      const auto& m = msgs[i];
      st->last_seq = std::max(st->last_seq, m.sequence);
      if (m.originator_id == bot_old_id && !m.turn.empty() &&
          m.turn.assigned_at == st->assigned_at) {
        if (m.turn.done) {
          answered = std::max(answered.value_or(-1), m.turn.through);
          if (partial && partial->id == m.turn.turn_id) partial.reset();
        } else if (partial && partial->id == m.turn.turn_id) {
          partial->effects = std::max(partial->effects, m.turn.effect + 1);
        } else {
          partial = Partial{m.turn.turn_id, m.turn.through, m.turn.effect + 1};
        }
        continue;
      }
      if (m.originator_role == "CONSUMER") {
        auto cm = ConsumerMessage::fromStored(m);
        if (auto k = classifyConsumerMessage(m, *cm.event); k == InputKind::kText)
          if (const auto* t = cm.event->if_contains("message"); t && t->is_string())
            last_consumer_text = std::string(t->get_string());
        continue;
      }
      bool content = m.event_json.find("\"ContentEvent\"") != std::string::npos ||
                     m.event_json.find("\"RichContentEvent\"") != std::string::npos;
      if (!content || m.audience != "ALL") continue;
      answered_upto = i + 1;
      if (m.originator_id == bot_old_id)
        bot_spoke = true;
      else
        others_spoke = true;
    }
    if (partial && answered && partial->through <= *answered) partial.reset();
    auto now = SteadyClock::now();
    bool chat = st->snapshot.channel == store::Channel::kChat;
    const std::int64_t boundary = answered_upto > 0 ? msgs[answered_upto - 1].sequence : -1;
    auto queueFrom = [&](std::int64_t after) {
      for (const auto& m : msgs)
        if (m.sequence > after)
          if (auto k = classifyConsumerMessage(m))
            st->queue.emplace_back(
                TurnInput{*k, {ConsumerMessage::fromStored(m)}, std::nullopt, m.sequence, {}, 0},
                now);
    };
    if (answered || partial) {
      std::int64_t lower = answered.value_or(boundary);
      if (partial) {
        TurnInput in;
        in.resume_id = partial->id;
        in.effects_done = partial->effects;
        in.through = partial->through;
        for (const auto& m : msgs)
          if (m.sequence > lower && m.sequence <= partial->through)
            if (auto k = classifyConsumerMessage(m)) {
              if (in.messages.empty()) in.kind = *k;
              in.messages.push_back(ConsumerMessage::fromStored(m));
            }
        if (in.messages.empty()) {
          in.kind = InputKind::kWelcome;
          if (!chat) in.last_consumer_message = last_consumer_text;
        }
        spdlog::info(
            "connector: conversation {}: turn {} was interrupted after {} of its effects; it "
            "runs again and publishes only the rest",
            st->id.str(), partial->id, partial->effects);
        st->queue.emplace_back(std::move(in), now);
        lower = std::max(lower, partial->through);
      }
      queueFrom(lower);
    } else {
      if (chat && !bot_spoke) {
        st->queue.emplace_back(TurnInput{InputKind::kWelcome, {}, std::nullopt, boundary, {}, 0},
                               now);
      } else if (!chat && configOf(st->bot)->welcome_after_transfer && others_spoke && !bot_spoke) {
        std::int64_t all = msgs.empty() ? -1 : msgs.back().sequence;
        st->queue.emplace_back(TurnInput{InputKind::kWelcome, {}, last_consumer_text, all, {}, 0},
                               now);
        answered_upto = msgs.size();
      }
      queueFrom(answered_upto > 0 ? msgs[answered_upto - 1].sequence : -1);
    }
    for (auto& [m, kind] : st->buffered) enqueueMessage(st, m, kind);
    st->buffered.clear();
    pump(st);
    armInactivityIfWaiting(st);
  }

  // `kind`: classifyConsumerMessage(m).
  void enqueueMessage(const std::shared_ptr<ConvState>& st, const ConsumerMessage& m,
                      InputKind kind) {
    const std::int64_t seq = m.message->sequence;
    if (seq <= st->last_seq) return;
    st->last_seq = seq;
    st->queue.emplace_back(TurnInput{kind, {m}, std::nullopt, seq, {}, 0}, SteadyClock::now());
  }

  // A consumer's content message (`kind`: classifyConsumerMessage(m)).
  void handleMessage(const std::shared_ptr<ConvState>& st, const ConsumerMessage& m,
                     InputKind kind) {
    if (!st->owned) return;
    cancelInactivity(st);  // the consumer is active
    if (st->catching_up) {
      st->buffered.emplace_back(m, kind);
      return;
    }
    enqueueMessage(st, m, kind);
    pump(st);
  }

  void pump(const std::shared_ptr<ConvState>& st) {
    if (st->turn_running || !st->owned || stopped || draining) return;
    if (st->limit_escalation) {
      st->limit_escalation = false;
      return startLimitEscalation(st);
    }
    if (st->queue.empty() || st->catching_up) return;
    const auto cfg_ptr = configOf(st->bot);
    const BotConfig& cfg = *cfg_ptr;
    // A resumed turn runs with exactly the messages it had: no combine window, nothing added.
    bool resumed = !st->queue.front().first.resume_id.empty();
    bool text_front = st->queue.front().first.kind == InputKind::kText && !resumed;
    if (cfg.combine.enabled && cfg.combine.time_frame_ms > 0 && text_front && !st->combine_ready) {
      if (!st->combine_armed) {
        st->combine_armed = true;
        armTimer(st, std::chrono::milliseconds(cfg.combine.time_frame_ms), [this, st] {
          st->combine_armed = false;
          st->combine_ready = true;
          pump(st);
        });
      }
      return;
    }
    st->combine_ready = false;
    auto [input, queued_at] = std::move(st->queue.front());
    st->queue.pop_front();
    if (cfg.combine.enabled && input.kind == InputKind::kText && input.resume_id.empty()) {
      while (!st->queue.empty() && st->queue.front().first.kind == InputKind::kText &&
             st->queue.front().first.resume_id.empty() &&
             static_cast<int>(input.messages.size()) < cfg.combine.max_messages) {
        input.through = std::max(input.through, st->queue.front().first.through);
        for (auto& m : st->queue.front().first.messages) input.messages.push_back(std::move(m));
        st->queue.pop_front();
      }
    }
    startTurn(st, std::move(input), queued_at);
  }

  template <class F>
  void armTimer(const std::shared_ptr<ConvState>& st, std::chrono::milliseconds d, F&& f) {
    auto timer = std::make_shared<asio::steady_timer>(st->strand, d);
    st->timer = timer;
    addBusy();
    timer->async_wait(
        [this, st, timer, f = std::forward<F>(f)](boost::system::error_code ec) mutable {
          if (!ec && !stopped) fenced(st, f);
          doneBusy();
        });
  }

  // ---- open-conversation limit and chat inactivity (strand) -----------------------------------

  std::shared_ptr<Turn> syntheticTurn(const std::shared_ptr<ConvState>& st) {
    auto turn = std::make_shared<Turn>();
    turn->id = randomUuid();
    turn->epoch = st->epoch;
    turn->bot = st->bot;
    turn->config = configOf(st->bot);
    turn->ts = clock.nowMs();
    turn->input_json = "{}";
    turn->failure_kind = TurnHealth::kNotCounted;  // not the function's nor the platform's fault
    return turn;
  }

  void startLimitEscalation(const std::shared_ptr<ConvState>& st) {
    auto turn = syntheticTurn(st);
    beginTurn(st, turn);
    std::size_t held = 0;
    {
      std::lock_guard l(mu);
      held = st->bot->held.size();
      metrics.limit_reached[st->bot->id.str()] += 1;
    }
    escalate(st, turn, codes::kMaxConvLimitReached,
             fmt::format("the bot already holds {} open conversations (the limit is {}); this one "
                         "is escalated without calling the function",
                         held - 1, opts.max_open_conversations));
  }

  void cancelInactivity(const std::shared_ptr<ConvState>& st) {
    ++st->idle_gen;
    if (st->idle_timer) {
      st->idle_timer->cancel();
      st->idle_timer.reset();
    }
  }

  // Arms the chat inactivity timers when the bot is waiting for the consumer: a CHAT
  // conversation it owns, no turn running or queued.
  void armInactivityIfWaiting(const std::shared_ptr<ConvState>& st) {
    if (!st->owned || st->turn_running || !st->queue.empty() || st->catching_up ||
        st->limit_escalation || stopped)
      return;
    if (st->snapshot.channel != store::Channel::kChat ||
        st->snapshot.state != store::ConversationState::kOpen)
      return;
    const ChatInactivity cfg = configOf(st->bot)->chat_inactivity;
    cancelInactivity(st);
    if (!cfg.enabled) return;
    if (cfg.warning_after_ms > 0)
      scheduleIdle(st, cfg.warning_after_ms, /*close=*/false);
    else
      scheduleIdle(st, cfg.close_after_ms, /*close=*/true);
  }

  // Inactivity timers are not "busy" (waitIdleForTest does not wait minutes for them); stop()
  // cancels them, and no new one is armed once stopped.
  void scheduleIdle(const std::shared_ptr<ConvState>& st, std::int64_t ms, bool close) {
    auto timer = std::make_shared<asio::steady_timer>(st->strand, std::chrono::milliseconds(ms));
    st->idle_timer = timer;
    std::uint64_t gen = st->idle_gen;
    std::weak_ptr<int> alive = life;
    timer->async_wait([this, alive, st, timer, gen, close](boost::system::error_code ec) {
      auto held = alive.lock();
      if (!held) return;  // the service is gone
      addBusy();          // before checking `stopped` (see armProbe)
      if (!ec && !stopped && gen == st->idle_gen && st->owned && !st->turn_running &&
          isActive(st->bot)) {
        auto idle = [&] { onIdle(st, close); };
        fenced(st, idle);
      }
      doneBusy();
    });
  }

  void onIdle(const std::shared_ptr<ConvState>& st, bool close) {
    const ChatInactivity cfg = configOf(st->bot)->chat_inactivity;
    {
      std::lock_guard l(mu);
      metrics.inactivity[{st->bot->id.str(), close ? "close" : "warning"}] += 1;
    }
    auto text = [](const std::string& t) {
      return bj::serialize(
          bj::object{{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", t}});
    };
    if (!close) {
      std::uint64_t gen = st->idle_gen;
      auto then = [this, st, gen, cfg](Result<conv::Published> r) {
        if (!r)
          spdlog::info("connector: inactivity warning in {} not sent: {}", st->id.str(),
                       r.error().message);
        if (gen == st->idle_gen && st->owned)
          scheduleIdle(st, cfg.close_after_ms - cfg.warning_after_ms, /*close=*/true);
      };
      if (cfg.warning_message.empty()) return then(Result<conv::Published>(conv::Published{}));
      auto turn = syntheticTurn(st);
      return publish(st, turn, text(cfg.warning_message), "[]", conv::Audience::kAll, then);
    }
    // Close: recorded as a turn (outcome CLOSED_INACTIVE) so the dashboard shows it.
    auto turn = syntheticTurn(st);
    beginTurn(st, turn);
    auto do_close = [this, st, turn] {
      update(st, turn, {conv::CloseField{std::string("BOT")}},
             [this, st, turn](Result<store::Conversation> r) {
               bj::object a{{"kind", "INACTIVITY_CLOSE"}, {"status", r ? "DONE" : "FAILED"}};
               if (!r) a["message"] = r.error().message;
               turn->actions.push_back(std::move(a));
               complete(st, turn, "CLOSED_INACTIVE");
             });
    };
    if (cfg.close_message.empty()) return do_close();
    publish(st, turn, text(cfg.close_message), "[]", conv::Audience::kAll,
            [turn, do_close](Result<conv::Published> r) {
              turn->actions.push_back(bj::object{{"kind", "INACTIVITY_CLOSE_MESSAGE"},
                                                 {"status", r ? "DONE" : "FAILED"}});
              do_close();
            });
  }

  // ---- hooks (spec §3.5) ------------------------------------------------------------------------
  //
  // The account's functions on a hook event whose state is deployed (Productive or Modified),
  // in name order, run when the bot enables that hook. Several pre (post) hooks chain: each gets
  // the previous one's output. The list is cached per account and event for kHookCacheTtl (a
  // function deployed or undeployed on a hook event takes effect within that time); it is read
  // only for bots that enable a hook.

  static constexpr const char* kPreHookEvent = "bot_connectors_pre_hook";
  static constexpr const char* kPostHookEvent = "bot_connectors_post_hook";
  static constexpr const char* kErrorHookEvent = "bot_connectors_error_hook";
  static constexpr auto kHookCacheTtl = std::chrono::seconds(10);
  struct HookList {
    std::map<std::string, std::vector<FunctionId>> by_event;
    SteadyClock::time_point loaded_at;
  };
  std::mutex hooks_mu;
  std::map<std::string, HookList> hook_cache;  // by account; guarded by hooks_mu

  std::vector<FunctionId> hookFunctions(const AccountId& acc, const std::string& event) {
    auto now = SteadyClock::now();
    {
      std::lock_guard l(hooks_mu);
      if (auto it = hook_cache.find(acc.str());
          it != hook_cache.end() && now - it->second.loaded_at < kHookCacheTtl) {
        auto e = it->second.by_event.find(event);
        return e == it->second.by_event.end() ? std::vector<FunctionId>{} : e->second;
      }
    }
    auto fns = store.functions().listFunctions(acc);
    if (!fns) {
      spdlog::warn("connector: cannot list the hook functions of account {}: {}", acc.str(),
                   fns.error().message);
      return {};
    }
    std::vector<const store::FunctionRecord*> deployed;
    for (const auto& f : *fns)
      if ((f.state == "Productive" || f.state == "Modified") &&
          f.event_id.starts_with("bot_connectors_") && f.event_id.ends_with("_hook"))
        deployed.push_back(&f);
    std::ranges::sort(deployed, [](auto* a, auto* b) { return a->name < b->name; });
    HookList list;
    list.loaded_at = now;
    for (auto* f : deployed) list.by_event[f->event_id].push_back(f->uuid);
    std::vector<FunctionId> out = list.by_event[event];
    std::lock_guard l(hooks_mu);
    hook_cache[acc.str()] = std::move(list);
    return out;
  }

  // Invokes hook `fn` with `payload` (JSON text) as input.payload; `then` runs on the strand.
  void invokeHook(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                  const FunctionId& fn, const std::string& tag, const std::string& payload_json,
                  std::function<void(const functions::InvokeResult&)> then) {
    functions::InvokeRequest req;
    req.account = st->account;
    req.function = fn;
    req.input_json =
        fmt::format(R"({{"timestamp":{},"headers":[],"payload":{}}})", clock.nowMs(), payload_json);
    req.deadline = std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms);
    req.request_id = turn->id + "-" + tag;
    auto t0 = SteadyClock::now();
    addBusy();
    runner.invoke(std::move(req), [this, st = st, turn = turn, t0,
                                   then = std::move(then)](functions::InvokeResult r) mutable {
      auto s = std::move(st);  // see released()
      onStrand(s, [turn = std::move(turn), t0, then = std::move(then), r = std::move(r)] {
        turn->hook_ms += msSince(t0);
        then(r);
      });
      released(std::move(s));
    });
  }

  void hookFailed(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                  const char* hook, const FunctionId& fn, const std::string& why) {
    {
      std::lock_guard l(mu);
      metrics.hook_failures[{turn->bot->id.str(), hook}] += 1;
    }
    turn->actions.push_back(bj::object{{"kind", hook},
                                       {"function", fn.str()},
                                       {"status", "FAILED"},
                                       {"code", std::string(kCodePrefix) + codes::kFailedHook},
                                       {"message", why}});
    turn->failure_kind = TurnHealth::kFunctionFailure;
    fail(st, turn, codes::kFailedHook, fmt::format("{} {} failed: {}", hook, fn.str(), why),
         /*retryable=*/false);
  }

  // Pre hooks: input.payload = the request {message, convId, event?, context}; the callback's
  // value (a JSON object) is the request the bot's function gets.
  void runPreHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   std::vector<FunctionId> fns, std::size_t i) {
    if (interrupted(st, turn)) return;
    if (stale(st, turn))
      return discard(st, turn, "the conversation changed owner while the pre hook ran");
    if (i == fns.size()) return invoke(st, turn);
    FunctionId fn = fns[i];
    auto input = parseOwn(turn->input_json);
    const bj::value* request = input ? input->as_object().if_contains("payload") : nullptr;
    if (!request)
      return hookFailed(st, turn, "PRE_HOOK", fn,
                        "the request for the pre hook cannot be built: " +
                            (input ? std::string("it has no payload") : input.error().message));
    std::string payload = bj::serialize(*request);
    invokeHook(
        st, turn, fn, "pre-hook-" + std::to_string(i), payload,
        [this, st, turn, fns = std::move(fns), i, fn](const functions::InvokeResult& r) {
          if (stale(st, turn))
            return discard(st, turn, "the conversation changed owner while the pre hook ran");
          if (!r.ok)
            return hookFailed(st, turn, "PRE_HOOK", fn, r.error_code + ": " + r.error_message);
          boost::system::error_code ec;
          bj::value out = bj::parse(r.result_json, ec);
          if (ec || !out.is_object())
            return hookFailed(st, turn, "PRE_HOOK", fn,
                              "the pre hook must call back with the request object "
                              "{message, convId, context}" +
                                  (ec ? " (" + ec.message() + ")" : std::string()) + "; got " +
                                  r.result_json.substr(0, 200));
          auto input = parseOwn(turn->input_json);
          if (!input)
            return hookFailed(st, turn, "PRE_HOOK", fn,
                              "the turn input cannot be read back: " + input.error().message);
          input->as_object()["payload"] = std::move(out);
          turn->input_json = bj::serialize(*input);
          turn->actions.push_back(
              bj::object{{"kind", "PRE_HOOK"}, {"function", fn.str()}, {"status", "DONE"}});
          runPreHooks(st, turn, fns, i + 1);
        });
  }

  // Post hooks: input.payload = the function's response; the callback's value replaces it and
  // is then validated and applied like any response.
  void runPostHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                    std::vector<FunctionId> fns, std::size_t i, std::string response_json) {
    if (interrupted(st, turn)) return;
    if (stale(st, turn))
      return discard(st, turn, "the conversation changed owner while the post hook ran");
    if (i == fns.size()) {
      if (response_json != turn->response_json) {
        boost::system::error_code ec;
        bj::value original = bj::parse(turn->response_json, ec);
        turn->actions.push_back(bj::object{{"kind", "POST_HOOK_RESPONSE"},
                                           {"functionResponse", ec ? bj::value() : original}});
        turn->response_json = response_json;
      }
      return planAndApply(st, turn, response_json);
    }
    std::string payload = response_json.empty() ? "null" : response_json;
    FunctionId fn = fns[i];
    invokeHook(
        st, turn, fn, "post-hook-" + std::to_string(i), payload,
        [this, st, turn, fns = std::move(fns), i, fn](const functions::InvokeResult& r) {
          if (stale(st, turn))
            return discard(st, turn, "the conversation changed owner while the post hook ran");
          if (!r.ok)
            return hookFailed(st, turn, "POST_HOOK", fn, r.error_code + ": " + r.error_message);
          turn->actions.push_back(
              bj::object{{"kind", "POST_HOOK"}, {"function", fn.str()}, {"status", "DONE"}});
          runPostHooks(st, turn, fns, i + 1, r.result_json);
        });
  }

  // Error hooks: told about the error, nothing fed back; a failure is only logged and counted.
  void runErrorHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                     const std::string& code, const std::string& message) {
    if (!turn->config->hooks.error) return;
    auto fns = hookFunctions(st->account, kErrorHookEvent);
    if (fns.empty()) return;
    auto parse = [](const std::string& text) {
      boost::system::error_code ec;
      bj::value v = bj::parse(text, ec);
      return ec ? bj::value() : v;
    };
    bj::value input = parse(turn->input_json);
    bj::value request = input.is_object() && input.as_object().contains("payload")
                            ? input.as_object().at("payload")
                            : bj::value();
    std::string error_id = randomUuid();
    std::string payload = bj::serialize(bj::object{
        {"error",
         {{"errorId", error_id}, {"name", std::string(kCodePrefix) + code}, {"message", message}}},
        {"vendor", turn->config->vendor},
        {"convId", st->id.str()},
        {"faasPayload", std::move(request)},
        {"faas", turn->response_json.empty() ? bj::value() : parse(turn->response_json)}});
    for (std::size_t i = 0; i < fns.size(); ++i) {
      functions::InvokeRequest req;
      req.account = st->account;
      req.function = fns[i];
      req.input_json =
          fmt::format(R"({{"timestamp":{},"headers":[],"payload":{}}})", clock.nowMs(), payload);
      req.deadline = std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms);
      req.request_id = turn->id + "-error-hook-" + std::to_string(i);
      turn->actions.push_back(bj::object{{"kind", "ERROR_HOOK"},
                                         {"function", fns[i].str()},
                                         {"errorId", error_id},
                                         {"status", "INVOKED"}});
      addBusy();
      runner.invoke(std::move(req), [this, bot = turn->bot->id.str(), fn = fns[i].str(),
                                     error_id](functions::InvokeResult r) {
        if (!r.ok) {
          spdlog::warn("connector: error hook {} of bot {} failed for error {}: {}: {}", fn, bot,
                       error_id, r.error_code, r.error_message);
          std::lock_guard l(mu);
          metrics.hook_failures[{bot, "ERROR_HOOK"}] += 1;
        }
        doneBusy();
      });
    }
  }

  // ---- turns -----------------------------------------------------------------------------------

  void startTurn(const std::shared_ptr<ConvState>& st, TurnInput input,
                 SteadyClock::time_point queued_at) {
    auto turn = std::make_shared<Turn>();
    turn->id = input.resume_id.empty() ? randomUuid() : input.resume_id;
    turn->durable = true;
    turn->through = input.through;
    turn->skip = input.effects_done;
    turn->input = std::move(input);
    turn->epoch = st->epoch;
    turn->bot = st->bot;
    {
      std::lock_guard l(mu);
      turn->config = st->bot->config;
    }
    turn->ts = clock.nowMs();
    turn->queued_ms =
        std::chrono::duration<double, std::milli>(SteadyClock::now() - queued_at).count();
    beginTurn(st, turn);
    // The chat line carries the skill name; messaging inputs do not need it.
    std::string name = st->snapshot.channel == store::Channel::kChat
                           ? skillName(st->account, st->snapshot.skill)
                           : std::string();
    bj::object lp_sdes;
    if (turn->config->engagement_attributes) {
      if (!st->sdes) {
        std::optional<std::string> profile;
        if (opts.consumer_profile)
          profile = opts.consumer_profile(st->account, st->snapshot.consumer);
        st->sdes = buildLpSdes(st->snapshot, profile, clock.nowMs());
        // SDE-service errors are recorded on the first turn (conversation errors); the turn goes
        // on.
        for (const auto& [code, message] : st->sdes->problems)
          turn->actions.push_back(bj::object{{"kind", "SDES"},
                                             {"status", "FAILED"},
                                             {"code", std::string(kCodePrefix) + code},
                                             {"message", message}});
      }
      lp_sdes = st->sdes->lp_sdes;
    }
    bj::object input_obj =
        buildFunctionInput(turn->input, st->snapshot, name, clock.nowMs(), lp_sdes);
    turn->input_json = bj::serialize(input_obj);
    // No pending-turn row: the consumer messages are stored, and this turn's done mark goes
    // with its last effect (TurnMark); after a restart catchUp derives what is still owed.
    std::string status, last_error;
    {
      std::lock_guard l(mu);
      status = turn->bot->status;
      last_error = turn->bot->last_platform_error;
    }
    if (status == "SERVICE_INTERRUPTION") {
      // The platform cannot run the function: do not call it; follow the escalation policy.
      turn->failure_kind = TurnHealth::kNotCounted;
      return escalate(st, turn, codes::kFailedFaasRequest,
                      fmt::format("the bot is in SERVICE_INTERRUPTION: the platform cannot run "
                                  "function {} ({}); the function was not called",
                                  turn->config->function.str(), last_error));
    }
    if (turn->config->hooks.pre) {
      auto fns = hookFunctions(st->account, kPreHookEvent);
      if (!fns.empty()) return runPreHooks(st, turn, fns, 0);
    }
    invoke(st, turn);
  }

  void invoke(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
    if (interrupted(st, turn)) return;
    ++turn->attempts;
    functions::InvokeRequest req;
    req.account = st->account;
    req.function = turn->config->function;
    req.input_json = turn->input_json;
    req.deadline = std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms);
    req.request_id = turn->id + "-" + std::to_string(turn->attempts);
    turn->t_invoke = SteadyClock::now();
    addBusy();
    runner.invoke(std::move(req), [this, st = st, turn = turn](functions::InvokeResult r) mutable {
      auto s = std::move(st);  // see released()
      onStrand(s, [this, s, turn = std::move(turn), r = std::move(r)] { onInvoked(s, turn, r); });
      released(std::move(s));
    });
  }

  bool stale(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) const {
    return !st->owned || st->epoch != turn->epoch;
  }

  void onInvoked(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                 const functions::InvokeResult& r) {
    turn->invoke_ms += msSince(turn->t_invoke);
    if (interrupted(st, turn)) return;
    {
      std::lock_guard l(mu);
      metrics.invoke_ms_sum[turn->bot->id.str()] += msSince(turn->t_invoke);
      metrics.invoke_count[turn->bot->id.str()] += 1;
    }
    turn->response_json = r.ok ? r.result_json : std::string();
    if (stale(st, turn)) {
      discard(st, turn,
              "the conversation changed owner (an agent took over, it was transferred "
              "or closed) while the function was running; the response is not sent");
      return;
    }
    if (!r.ok) {
      if (platformFailure(r.error_code)) {
        turn->failure_kind = TurnHealth::kPlatformFailure;
        turn->platform_error = r.error_code;
        fail(st, turn, codes::kFailedFaasRequest,
             fmt::format("the platform could not run the function: {}: {}", r.error_code,
                         r.error_message),
             /*retryable=*/true);
        return;
      }
      turn->failure_kind = TurnHealth::kFunctionFailure;
      fail(st, turn, codes::kInvokeLambda,
           fmt::format("the function failed: {}: {}", r.error_code, r.error_message),
           /*retryable=*/true);
      return;
    }
    turn->failure_kind = TurnHealth::kFunctionFailure;  // from here on, failures are the bot's
    if (turn->config->hooks.post) {
      auto fns = hookFunctions(st->account, kPostHookEvent);
      if (!fns.empty()) return runPostHooks(st, turn, fns, 0, r.result_json);
    }
    planAndApply(st, turn, r.result_json);
  }

  void planAndApply(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                    const std::string& response_json) {
    PlanOptions po;
    po.channel = st->snapshot.channel;
    po.image_allowlist = allowlistFor(st->account);
    po.max_delay_s = opts.max_delay_s;
    po.conversation_id = st->id.str();
    ResponsePlan plan = planResponse(response_json, validator, po);
    for (auto& p : plan.refused) turn->refused.push_back(p);
    if (plan.fatal) {
      fail(st, turn, plan.fatal->code,
           plan.fatal->message + (plan.fatal->path.empty() ? "" : " (at " + plan.fatal->path + ")"),
           true);
      return;
    }
    for (const auto& p : plan.refused)
      turn->actions.push_back(bj::object{{"kind", "REFUSED"},
                                         {"status", "REFUSED"},
                                         {"code", std::string(kCodePrefix) + p.code},
                                         {"path", p.path},
                                         {"message", p.message}});
    // The done mark rides on the last message unless an action that stores something of its
    // own follows (a transfer or close moves the conversation away; a TTR change is marked
    // with markTurn after it).
    if (!plan.action || plan.action->kind == ActionKind::kInvocation)
      for (std::size_t i = plan.steps.size(); i-- > 0;)
        if (plan.steps[i].kind != StepKind::kDelay) {
          turn->done_step = i;
          break;
        }
    auto shared_plan = std::make_shared<ResponsePlan>(std::move(plan));
    applyStep(st, turn, shared_plan, 0);
  }

  // Publishes one of a turn's events. A durable turn's stored events (not chat states) are its
  // numbered effects, each stored with the turn's mark; `kDone` marks the turn done in the
  // commit that stores it. An effect a resumed turn had already stored before it was
  // interrupted is not published again (`then` gets an empty Published at once).
  enum class Effect { kChatState, kMessage, kDone };
  void publish(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
               std::string event_json, std::string metadata_json, conv::Audience audience,
               std::function<void(Result<conv::Published>)> then,
               Effect effect = Effect::kMessage) {
    conv::PublishRequest req;
    req.actor = botActor(*turn->bot);
    req.conversation = st->id;
    req.event_json = std::move(event_json);
    req.metadata_json = std::move(metadata_json);
    req.audience = audience;
    if (turn->durable && effect != Effect::kChatState) {
      int n = turn->effects++;
      if (n < turn->skip) {
        turn->actions.push_back(bj::object{{"kind", "ALREADY_SENT"}, {"effect", n}});
        return then(conv::Published{});
      }
      req.turn =
          store::TurnMark{turn->id, st->assigned_at, turn->through, n, effect == Effect::kDone};
      if (effect == Effect::kDone)
        then = [turn, then = std::move(then)](Result<conv::Published> r) {
          if (r) turn->done_marked = true;
          then(std::move(r));
        };
    }
    addBusy();
    convs.publish(std::move(req),
                  [this, st = st, then = std::move(then)](Result<conv::Published> r) mutable {
                    auto s = std::move(st);  // see released()
                    onStrand(s, [then = std::move(then), r = std::move(r)] { then(r); });
                    released(std::move(s));
                  });
  }

  static bool ownershipError(const Error& e) {
    return e.code == ErrorCode::kForbidden || e.code == ErrorCode::kConflict;
  }

  void applyStep(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                 const std::shared_ptr<ResponsePlan>& plan, std::size_t i) {
    if (interrupted(st, turn)) return;
    if (stale(st, turn)) {
      discard(st, turn,
              "the conversation changed owner while the response was being sent; the "
              "rest is not sent");
      return;
    }
    if (i == plan->steps.size()) {
      applyAction(st, turn, plan);
      return;
    }
    const Step& step = plan->steps[i];
    if (step.kind == StepKind::kDelay) {
      auto after_delay = [this, st, turn, plan, i] {
        if (stale(st, turn)) return applyStep(st, turn, plan, i);
        turn->actions.push_back(bj::object{{"kind", "DELAY"},
                                           {"status", "DONE"},
                                           {"seconds", plan->steps[i].delay_s},
                                           {"source", plan->steps[i].source}});
        if (!plan->steps[i].typing) return applyStep(st, turn, plan, i + 1);
        publish(
            st, turn, R"({"type":"ChatStateEvent","chatState":"ACTIVE"})", "[]",
            conv::Audience::kAll,
            [this, st, turn, plan, i](Result<conv::Published>) {
              applyStep(st, turn, plan, i + 1);
            },
            Effect::kChatState);
      };
      auto wait = [this, st, turn, plan, i, after_delay] {
        armTimer(st, std::chrono::milliseconds(plan->steps[i].delay_s * opts.ms_per_delay_second),
                 after_delay);
      };
      if (step.typing)
        publish(
            st, turn, R"({"type":"ChatStateEvent","chatState":"COMPOSING"})", "[]",
            conv::Audience::kAll, [wait](Result<conv::Published>) { wait(); }, Effect::kChatState);
      else
        wait();
      return;
    }
    conv::Audience audience = step.kind == StepKind::kPrivateText
                                  ? conv::Audience::kAgentsAndManagers
                                  : conv::Audience::kAll;
    Effect effect = turn->done_step == i ? Effect::kDone : Effect::kMessage;
    publish(
        st, turn, step.event_json, bj::serialize(step.metadata), audience,
        [this, st, turn, plan, i](Result<conv::Published> r) {
          const Step& s = plan->steps[i];
          bj::object a{{"kind", stepKindName(s.kind)}, {"source", s.source}};
          if (r) {
            a["status"] = "DONE";
            if (r->sequence) a["sequence"] = *r->sequence;
            turn->actions.push_back(std::move(a));
          } else {
            a["status"] = "FAILED";
            a["message"] = r.error().message;
            turn->actions.push_back(std::move(a));
            if (ownershipError(r.error())) {
              discard(st, turn,
                      "publishing failed because the bot no longer owns the "
                      "conversation: " +
                          r.error().message);
              return;
            }
          }
          applyStep(st, turn, plan, i + 1);
        },
        effect);
  }

  void update(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
              std::vector<conv::FieldChange> changes,
              std::function<void(Result<store::Conversation>)> then) {
    addBusy();
    convs.updateConversation(
        botActor(*turn->bot), st->id, std::move(changes),
        [this, st = st, then = std::move(then)](Result<store::Conversation> r) mutable {
          auto s = std::move(st);  // see released()
          onStrand(s, [then = std::move(then), r = std::move(r)] { then(r); });
          released(std::move(s));
        });
  }

  void applyAction(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   const std::shared_ptr<ResponsePlan>& plan) {
    if (!plan->action) return complete(st, turn, turn->refused.empty() ? "OK" : "PARTIAL");
    const Action& a = *plan->action;
    bj::object rec = a.toJson();
    rec["kind"] = "ACTION";
    switch (a.kind) {
      case ActionKind::kTransfer: {
        // The transfer's metadata (spec §2.4/§2.5): ActionReason and the intents. The engine's
        // update API carries no metadata, so it is recorded on the turn's action; agents see the
        // intents as BotResponse metadata on the bot's messages.
        bj::array md{bj::object{{"type", "ActionReason"}, {"reason", "escalated_by_bot"}}};
        if (plan->bot_response) md.push_back(*plan->bot_response);
        rec["metadata"] = std::move(md);
        auto skill = skillByName(st->account, a.skill);
        if (!skill) {
          rec["status"] = "REFUSED";
          rec["code"] = std::string(kCodePrefix) + codes::kTransferSkillNotExisting;
          turn->actions.push_back(rec);
          return escalate(st, turn, codes::kTransferSkillNotExisting,
                          fmt::format("TRANSFER to skill \"{}\": no such skill (names are "
                                      "case-sensitive)",
                                      a.skill));
        }
        std::vector<conv::FieldChange> changes;
        if (a.agent_id) {
          std::string agent = *a.agent_id;
          if (auto dot = agent.find('.'); dot != std::string::npos) agent = agent.substr(dot + 1);
          changes = conv::transferToAgent(UserId(agent), *skill);
        } else {
          changes = conv::transferToSkill(*skill);
        }
        update(st, turn, std::move(changes),
               [this, st, turn, rec](Result<store::Conversation> r) mutable {
                 if (!r) {
                   rec["status"] = "FAILED";
                   rec["message"] = r.error().message;
                   turn->actions.push_back(rec);
                   if (ownershipError(r.error()))
                     return discard(st, turn, "the transfer failed: " + r.error().message);
                   return escalate(st, turn, codes::kTransferToSkill,
                                   "the transfer failed: " + r.error().message);
                 }
                 rec["status"] = "DONE";
                 turn->actions.push_back(rec);
                 turn->handed_off = true;
                 complete(st, turn, turn->refused.empty() ? "OK" : "PARTIAL");
               });
        return;
      }
      case ActionKind::kClose:
        update(st, turn, {conv::CloseField{std::string("BOT")}},
               [this, st, turn, rec](Result<store::Conversation> r) mutable {
                 if (r) turn->handed_off = true;
                 rec["status"] = r ? "DONE" : "FAILED";
                 if (!r) {
                   rec["code"] = std::string(kCodePrefix) + codes::kEndConversation;
                   rec["message"] = r.error().message;
                 }
                 turn->actions.push_back(rec);
                 complete(st, turn, r && turn->refused.empty() ? "OK" : "PARTIAL");
               });
        return;
      case ActionKind::kChangeTtr:
        update(st, turn, {conv::TtrField{a.ttr_type, a.ttr_value_s}},
               [this, st, turn, rec](Result<store::Conversation> r) mutable {
                 rec["status"] = r ? "DONE" : "FAILED";
                 if (!r) {
                   rec["code"] = std::string(kCodePrefix) + codes::kChangeTtr;
                   rec["message"] = r.error().message;
                 }
                 turn->actions.push_back(rec);
                 complete(st, turn, r && turn->refused.empty() ? "OK" : "PARTIAL");
               });
        return;
      case ActionKind::kInvocation: {
        functions::InvokeRequest req;
        req.account = st->account;
        req.function = FunctionId(a.lambda_uuid);
        req.input_json = bj::serialize(bj::object{
            {"timestamp", clock.nowMs()}, {"headers", bj::array{}}, {"payload", a.payload}});
        req.deadline = std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms);
        req.request_id = turn->id + "-invocation";
        bool fail_on_error = a.fail_on_error;
        addBusy();
        runner.invoke(std::move(req), [this, st = st, turn = turn, rec,
                                       fail_on_error](functions::InvokeResult r) mutable {
          auto s = std::move(st);  // see released()
          onStrand(s, [this, st = s, turn = std::move(turn), rec, fail_on_error,
                       r = std::move(r)]() mutable {
            if (r.ok) {
              rec["status"] = "DONE";
              turn->actions.push_back(rec);
              return complete(st, turn, turn->refused.empty() ? "OK" : "PARTIAL");
            }
            rec["status"] = fail_on_error ? "FAILED" : "FAILED_IGNORED";
            rec["code"] = std::string(kCodePrefix) + codes::kFailedBotAction;
            rec["message"] = r.error_code + ": " + r.error_message;
            turn->actions.push_back(rec);
            if (fail_on_error)
              return escalate(st, turn, codes::kFailedBotAction,
                              "INVOCATION of " + std::string(rec["lambdaUuid"].as_string()) +
                                  " failed: " + r.error_code + ": " + r.error_message);
            complete(st, turn, "PARTIAL");
          });
          released(std::move(s));
        });
        return;
      }
    }
  }

  // A failed invocation or an unusable response: retry per policy, then escalate.
  void fail(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
            const std::string& code, const std::string& message, bool retryable) {
    std::string status;
    {
      std::lock_guard l(mu);
      status = turn->bot->status;
    }
    turn->actions.push_back(bj::object{{"kind", "ATTEMPT"},
                                       {"attempt", turn->attempts},
                                       {"status", "FAILED"},
                                       {"code", std::string(kCodePrefix) + code},
                                       {"message", message}});
    if (retryable && status == "ONLINE" && turn->attempts <= turn->config->escalation.retries) {
      {
        std::lock_guard l(mu);
        metrics.retries[turn->bot->id.str()] += 1;
      }
      invoke(st, turn);
      return;
    }
    escalate(st, turn, code, message);
  }

  // Escalation (spec §3.3): message to the consumer, private note with the reason to the agent
  // side, transfer to the escalation skill; the failure message when that transfer fails.
  void escalate(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                const std::string& code, const std::string& message) {
    if (interrupted(st, turn)) return;
    turn->escalating = true;
    turn->error = std::string(kCodePrefix) + code + ": " + message;
    {
      std::lock_guard l(mu);
      metrics.escalations[turn->bot->id.str()] += 1;
    }
    runErrorHooks(st, turn, code, message);
    health(turn->bot, turn->failure_kind, turn->platform_error);
    if (stale(st, turn))
      return discard(st, turn, "the conversation changed owner before the escalation");
    const EscalationPolicy& pol = turn->config->escalation;
    auto after_note = [this, st, turn, pol] {
      auto skill = pol.skill.empty() ? std::nullopt : skillByName(st->account, pol.skill);
      if (!skill) {
        turn->actions.push_back(
            bj::object{{"kind", "ESCALATION_TRANSFER"},
                       {"status", "FAILED"},
                       {"message", pol.skill.empty()
                                       ? "no escalation skill configured"
                                       : "escalation skill \"" + pol.skill + "\" does not exist"}});
        return sendFailureMessage(st, turn);
      }
      update(st, turn, conv::transferToSkill(*skill),
             [this, st, turn, skill](Result<store::Conversation> r) {
               turn->actions.push_back(bj::object{{"kind", "ESCALATION_TRANSFER"},
                                                  {"skillId", skill->str()},
                                                  {"status", r ? "DONE" : "FAILED"},
                                                  {"message", r ? "" : r.error().message}});
               if (!r) return sendFailureMessage(st, turn);
               turn->handed_off = true;
               complete(st, turn, "ESCALATED");
             });
    };
    auto send_note = [this, st, turn, pol, code, message, after_note] {
      std::string note =
          fmt::format("{} Reason: {}{}: {}", pol.agent_message, kCodePrefix, code, message);
      bj::array md{bj::object{{"type", "ActionReason"},
                              {"reason", "escalated_by_error"},
                              {"reasonId", code.substr(0, 64)}}};
      publish(st, turn,
              bj::serialize(bj::object{
                  {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", note}}),
              bj::serialize(md), conv::Audience::kAgentsAndManagers,
              [turn, after_note](Result<conv::Published> r) {
                turn->actions.push_back(
                    bj::object{{"kind", "ESCALATION_NOTE"}, {"status", r ? "DONE" : "FAILED"}});
                after_note();
              });
    };
    if (pol.message.empty()) return send_note();
    publish(st, turn,
            bj::serialize(bj::object{
                {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", pol.message}}),
            "[]", conv::Audience::kAll, [turn, send_note](Result<conv::Published> r) {
              turn->actions.push_back(
                  bj::object{{"kind", "ESCALATION_MESSAGE"}, {"status", r ? "DONE" : "FAILED"}});
              send_note();
            });
  }

  void sendFailureMessage(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
    const std::string& text = turn->config->escalation.failure_message;
    if (text.empty()) return complete(st, turn, "ESCALATION_FAILED");
    publish(st, turn,
            bj::serialize(bj::object{
                {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text}}),
            "[]", conv::Audience::kAll, [this, st, turn](Result<conv::Published> r) {
              turn->actions.push_back(bj::object{{"kind", "ESCALATION_FAILURE_MESSAGE"},
                                                 {"status", r ? "DONE" : "FAILED"}});
              complete(st, turn, "ESCALATION_FAILED");
            });
  }

  void discard(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
               const std::string& why) {
    turn->error = why;
    {
      std::lock_guard l(mu);
      metrics.discarded[turn->bot->id.str()] += 1;
    }
    complete(st, turn, "DISCARDED");
  }

  // Bot health (README "Bot health"):
  // - `interruptionThreshold` consecutive turns failed by the function or its response →
  //   VENDOR_INTERRUPTION; the next successful turn → ONLINE.
  // - the platform could not run the function (platformFailure): at once when the function is
  //   gone (not deployed / deleted), else after `interruptionThreshold` consecutive such
  //   invocations → SERVICE_INTERRUPTION: the bot user goes AWAY (no new conversations), turns
  //   of its conversations escalate without calling the function, and every
  //   `service_probe_interval_ms` a probe invocation checks the platform; when the platform runs
  //   the function again (even if the function itself fails) → ONLINE.
  void health(const std::shared_ptr<BotRuntime>& bot, TurnHealth h,
              const std::string& platform_error = {}) {
    std::string old_status, new_status;
    {
      std::lock_guard l(mu);
      old_status = bot->status;
      switch (h) {
        case TurnHealth::kNotCounted:
          return;
        case TurnHealth::kSuccess:
          bot->consecutive_failures = 0;
          bot->platform_failures = 0;
          if (bot->status != "ONLINE") new_status = bot->status = "ONLINE";
          break;
        case TurnHealth::kFunctionFailure:
          bot->platform_failures = 0;
          ++bot->consecutive_failures;
          if (bot->status == "ONLINE" &&
              bot->consecutive_failures >= bot->config->interruption_threshold)
            new_status = bot->status = "VENDOR_INTERRUPTION";
          break;
        case TurnHealth::kPlatformFailure:
          ++bot->platform_failures;
          bot->last_platform_error = platform_error;
          if (bot->status != "SERVICE_INTERRUPTION" &&
              (functionGone(platform_error) ||
               bot->platform_failures >= bot->config->interruption_threshold))
            new_status = bot->status = "SERVICE_INTERRUPTION";
          break;
      }
      if (new_status.empty()) return;
      if (old_status == "SERVICE_INTERRUPTION" && bot->probe_timer) bot->probe_timer->cancel();
    }
    transitioned(bot, old_status, new_status);
  }

  // After a status change: log, store it, and move the bot user in or out of routing.
  void transitioned(const std::shared_ptr<BotRuntime>& bot, const std::string& old_status,
                    const std::string& new_status) {
    spdlog::warn("connector: bot {} is now {} (was {})", bot->id.str(), new_status, old_status);
    auto rec = store.bots().getBot(bot->account, bot->id);
    if (rec) {
      rec->status = new_status;
      rec->updated_at = clock.nowMs();
      (void)store.bots().updateBot(*rec);
    }
    if (new_status == "SERVICE_INTERRUPTION") {
      setAvailabilityAsync(*bot, store::Availability::kAway);
      armProbe(bot);
    } else if (old_status == "SERVICE_INTERRUPTION") {
      setAvailabilityAsync(*bot, store::Availability::kOnline);
    }
  }

  void setAvailabilityAsync(const BotRuntime& b, store::Availability av) {
    addBusy();
    convs.setAgentState(b.account, b.user.id, av,
                        [this, id = b.id.str()](Result<store::AgentState> r) {
                          if (!r)
                            spdlog::error("connector: cannot change the availability of bot {}: {}",
                                          id, r.error().message);
                          doneBusy();
                        });
  }

  bool isActive(const std::shared_ptr<BotRuntime>& bot) {
    std::lock_guard l(mu);
    auto it = bots.find({bot->account.str(), bot->id.str()});
    return it != bots.end() && it->second == bot;
  }

  // SERVICE_INTERRUPTION recovery: a timer (not counted as busy: it is not work in flight), then
  // a probe invocation with the Test Connection input.
  void armProbe(const std::shared_ptr<BotRuntime>& bot) {
    auto timer = std::make_shared<asio::steady_timer>(
        pool, std::chrono::milliseconds(std::max(1, opts.service_probe_interval_ms)));
    // Armed and cancelled only under `mu` (a timer is not thread-safe); never once stopped (stop()
    // cancels the armed ones under `mu`, and the pool's join would wait for a pending timer).
    std::lock_guard l(mu);
    if (stopped) return;
    bot->probe_timer = timer;
    timer->async_wait([this, bot, timer](boost::system::error_code ec) {
      addBusy();  // before checking `stopped`: stop() sets it, then waits for busy == 0
      if (!ec && !stopped && isActive(bot)) probe(bot);
      doneBusy();
    });
  }

  void probe(const std::shared_ptr<BotRuntime>& bot) {
    functions::InvokeRequest req;
    req.account = bot->account;
    const auto cfg_ptr = configOf(bot);
    const BotConfig& cfg = *cfg_ptr;
    req.function = cfg.function;
    req.input_json = bj::serialize(sampleFunctionInput(clock.nowMs()));
    req.deadline = std::chrono::milliseconds(cfg.escalation.turn_timeout_ms);
    req.request_id = "probe-" + randomHex(8);
    addBusy();
    runner.invoke(std::move(req), [this, bot = bot](functions::InvokeResult r) mutable {
      // Moved: the runner may destroy this callback after stop() (see released()).
      asio::post(pool, [this, bot = std::move(bot), r = std::move(r)] {
        bool still = false;
        {
          std::lock_guard l(mu);
          still = bot->status == "SERVICE_INTERRUPTION";
        }
        if (still && isActive(bot)) {
          if (r.ok || !platformFailure(r.error_code)) {
            spdlog::info("connector: bot {}: the platform runs function {} again", bot->id.str(),
                         configOf(bot)->function.str());
            health(bot, TurnHealth::kSuccess);
          } else {
            {
              std::lock_guard l(mu);
              bot->last_platform_error = r.error_code;
            }
            if (!stopped) armProbe(bot);
          }
        }
        doneBusy();
      });
    });
  }

  void complete(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                const std::string& outcome) {
    turn->outcome = outcome;
    if (outcome == "OK" || outcome == "PARTIAL") health(turn->bot, TurnHealth::kSuccess);
    double total = msSince(turn->t_start);
    store::TurnRecord rec;
    rec.account = st->account;
    rec.bot = turn->bot->id;
    rec.conversation = st->id;
    rec.turn_id = turn->id;
    rec.ts = turn->ts;
    rec.outcome = outcome;
    rec.input_json = turn->input_json;
    rec.response_json = turn->response_json;
    rec.actions_json = bj::serialize(turn->actions);
    rec.timings_json = bj::serialize(
        bj::object{{"queuedMs", turn->queued_ms},
                   {"invokeMs", turn->invoke_ms},
                   {"hookMs", turn->hook_ms},
                   {"applyMs", std::max(0.0, total - turn->invoke_ms - turn->hook_ms)},
                   {"totalMs", total},
                   {"attempts", turn->attempts}});
    rec.error = turn->error;
    // Asynchronous, group-committed by the store; the next turn does not wait for it. `done`
    // runs on a store thread: it only logs, counts and releases the busy mark.
    addBusy();
    store.bots().appendTurnAsync(
        std::move(rec), opts.turns_kept, [this, turn_id = turn->id](Status s) {
          if (!s) {
            ++turn_record_failures;
            spdlog::error("connector: cannot record turn {}: {}", turn_id, s.error().message);
          }
          doneBusy();
        });
    {
      std::lock_guard l(mu);
      metrics.turns[{turn->bot->id.str(), outcome}] += 1;
    }
    // A durable turn whose done mark no message carried (a TTR action, a failed last publish,
    // an escalation that kept the conversation) is marked done on the conversation; the engine
    // applies it before anything the next turn publishes.
    if (turn->durable && !turn->done_marked && !turn->handed_off && outcome != "DISCARDED" &&
        outcome != "INTERRUPTED" && !stale(st, turn))
      markDone(st, turn);
    endTurn(st);
    if (!st->owned && st->snapshot.state == store::ConversationState::kClose) {
      std::lock_guard l(mu);
      conversations.erase(st->id.str());
    }
    pump(st);
    armInactivityIfWaiting(st);
  }

  void markDone(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
    store::TurnMark mark{turn->id, st->assigned_at, turn->through, turn->effects, true};
    addBusy();
    convs.markTurn(botActor(*turn->bot), st->id, std::move(mark),
                   [this, id = turn->id, conv = st->id.str()](Result<void> r) {
                     if (!r)
                       spdlog::warn(
                           "connector: turn {} of conversation {} could not be marked done ({}); "
                           "a restart may run it again",
                           id, conv, r.error().message);
                     doneBusy();
                   });
  }

  // ---- bots ------------------------------------------------------------------------------------

  bj::object botJson(const store::BotRecord& b) {
    bj::object o = botConfigJson(botConfigFromStored(b.config_json));
    o["id"] = b.id.str();
    o["userId"] = b.user.str();
    o["status"] = b.status;
    o["createdAt"] = b.created_at;
    o["updatedAt"] = b.updated_at;
    return o;
  }

  Status resolveSkills(const AccountId& acc, BotConfig& c) {
    auto skills = store.accounts().listSkills(acc);
    if (!skills) return std::unexpected(skills.error());
    putSkills(acc, *skills);  // a bot create/update refreshes the turn-time cache
    c.skill_ids.clear();
    for (const auto& want : c.skills) {
      std::optional<SkillId> found;
      for (const auto& s : *skills)
        if (s.name == want || s.id.str() == want) found = s.id;
      if (!found)
        return invalid(
            fmt::format("skill \"{}\" does not exist; create it first (POST skills)", want));
      c.skill_ids.push_back(*found);
    }
    if (!c.escalation.skill.empty()) {
      bool ok = false;
      for (const auto& s : *skills) ok = ok || s.name == c.escalation.skill;
      if (!ok)
        return invalid(
            fmt::format("escalation skill \"{}\" does not exist (skill names are case-sensitive)",
                        c.escalation.skill));
    }
    return {};
  }

  Status syncUser(const AccountId& acc, const UserId& user, const BotConfig& c) {
    auto u = store.accounts().getUser(acc, user);
    if (!u) return std::unexpected(u.error());
    u->skills = c.skill_ids;
    if (auto s = store.accounts().updateUser(*u); !s) return s;
    return {};
  }

  template <class T>
  Result<T> wait(std::function<void(conv::Callback<T>)> f) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto fut = p->get_future();
    f([p](Result<T> r) { p->set_value(std::move(r)); });
    if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
      return makeError(ErrorCode::kTimeout, "the conversation engine did not answer in 30 s");
    return fut.get();
  }

  Status setAvailability(const BotRuntime& b, store::Availability av) {
    auto r =
        wait<void>([&](conv::Callback<void> cb) { convs.refreshAgent(b.account, b.user.id, cb); });
    (void)r;
    auto s = wait<store::AgentState>([&](conv::Callback<store::AgentState> cb) {
      convs.setAgentState(b.account, b.user.id, av, cb);
    });
    if (!s) return std::unexpected(s.error());
    return {};
  }

  // Makes a stored bot live: registers it, sets its user ONLINE, and resumes its open
  // conversations.
  Status activate(const store::BotRecord& rec) {
    auto user = store.accounts().getUser(rec.account, rec.user);
    if (!user) return std::unexpected(user.error());
    auto rt = std::make_shared<BotRuntime>();
    rt->account = rec.account;
    rt->id = rec.id;
    rt->user = *user;
    rt->config = std::make_shared<const BotConfig>(botConfigFromStored(rec.config_json));
    rt->status = rec.status == "OFFLINE" ? "ONLINE" : rec.status;
    if (rt->status == "SERVICE_INTERRUPTION") {
      // A restart retries the platform: the next turn finds out whether it runs the function.
      rt->status = "ONLINE";
      store::BotRecord online = rec;
      online.status = "ONLINE";
      online.updated_at = clock.nowMs();
      (void)store.bots().updateBot(online);
    }
    {
      std::lock_guard l(mu);
      bots[{rec.account.str(), rec.id.str()}] = rt;
      by_user[{rec.account.str(), rec.user.str()}] = rt;
    }
    if (auto s = setAvailability(*rt, store::Availability::kOnline); !s) return s;
    store::ConversationQuery q;
    q.state = store::ConversationState::kOpen;
    q.limit = 100000;
    auto open = store.conversations().listConversations(rec.account, q);
    if (open)
      for (const auto& c : *open)
        if (assignedAgent(c) == rec.user.str()) conversationChanged(c);
    return {};
  }

  void deactivate(const AccountId& acc, const BotId& id) {
    std::shared_ptr<BotRuntime> rt;
    {
      std::lock_guard l(mu);
      auto it = bots.find({acc.str(), id.str()});
      if (it == bots.end()) return;
      rt = it->second;
      bots.erase(it);
      by_user.erase({acc.str(), rt->user.id.str()});
      if (rt->probe_timer) rt->probe_timer->cancel();
    }
    (void)setAvailability(*rt, store::Availability::kOffline);
  }

  // Hands every open conversation still assigned to a stopped (or deleted) bot's user on: to the
  // bot's escalation skill when it has one that exists, else back to the queue of the skill the
  // conversation is in. The bot is no longer routed to (OFFLINE), so a restart does not give
  // them back. Blocking: REST threads and start().
  void handOff(const AccountId& acc, const BotId& id, const UserId& user, const BotConfig& cfg) {
    store::ConversationQuery q;
    q.state = store::ConversationState::kOpen;
    q.limit = 100000;
    auto open = store.conversations().listConversations(acc, q);
    if (!open) {
      spdlog::error("connector: bot {} stopped, but its conversations cannot be listed: {}",
                    id.str(), open.error().message);
      return;
    }
    std::optional<SkillId> target;
    if (!cfg.escalation.skill.empty()) target = skillByName(acc, cfg.escalation.skill);
    std::uint64_t moved = 0;
    for (const auto& c : *open) {
      if (assignedAgent(c) != user.str()) continue;
      auto r = wait<store::Conversation>([&](conv::Callback<store::Conversation> cb) {
        convs.updateConversation(conv::Actor::ofSystem(acc), c.id,
                                 conv::transferToSkill(target.value_or(c.skill)), cb);
      });
      if (!r) {
        spdlog::error("connector: conversation {} of stopped bot {} could not be handed on: {}",
                      c.id.str(), id.str(), r.error().message);
        continue;
      }
      ++moved;
    }
    if (moved == 0) return;
    spdlog::info("connector: bot {} stopped: {} open conversations handed to skill {}", id.str(),
                 moved, target ? target->str() : std::string("(their own queue)"));
    std::lock_guard l(mu);
    metrics.handed_off[id.str()] += moved;
  }
};

// ---------------------------------------------------------------------------------------------
// BotService

BotService::BotService(store::Store& store, conv::ConversationService& conversations,
                       functions::Runner& runner, richcontent::Validator validator,
                       const Clock& clock, ConnectorOptions options)
    : impl_(std::make_unique<Impl>(store, conversations, runner, std::move(validator), clock,
                                   std::move(options))) {}

BotService::~BotService() { stop(); }

Status BotService::start() {
  if (auto s = impl_->loadAllowlists(); !s) return s;
  impl_->subscription = impl_->convs.subscribe(*this);
  auto all = impl_->store.bots().listAllBots();
  if (!all) return std::unexpected(all.error());
  auto pending = impl_->store.bots().listPendingTurns();
  if (pending)
    for (const auto& p : *pending) {
      spdlog::info(
          "connector: turn {} of conversation {} was interrupted by a restart; unanswered "
          "consumer messages are answered again",
          p.turn_id, p.conversation.str());
      (void)impl_->store.bots().deletePendingTurn(p.turn_id);
    }
  for (const auto& b : *all) {
    if (b.status == "OFFLINE") {
      // A stop that a crash interrupted: hand on what the stopped bot still holds.
      impl_->handOff(b.account, b.id, b.user, botConfigFromStored(b.config_json));
      continue;
    }
    if (auto s = impl_->activate(b); !s)
      spdlog::error("connector: cannot resume bot {}: {}", b.id.str(), s.error().message);
  }
  return {};
}

int BotService::drain(std::chrono::milliseconds deadline) {
  impl_->draining = true;
  {
    std::unique_lock l(impl_->idle_mu);
    impl_->idle_cv.wait_for(l, deadline, [&] { return impl_->running_turns.load() == 0; });
  }
  int left = impl_->running_turns.load();
  impl_->interrupting = true;
  if (left > 0)
    spdlog::warn(
        "connector: {} turns still running after the drain deadline ({} ms); they stop at their "
        "next step and run again at the next start",
        left, deadline.count());
  return left;
}

void BotService::stop() {
  impl_->interrupting = true;
  if (impl_->stopped.exchange(true)) return;
  impl_->subscription.reset();
  {
    std::lock_guard l(impl_->mu);
    for (auto& [k, c] : impl_->conversations)
      impl_->onStrand(c, [c] {
        if (c->timer) c->timer->cancel();
        if (c->idle_timer) c->idle_timer->cancel();
      });
    for (auto& [k, b] : impl_->bots)
      if (b->probe_timer) b->probe_timer->cancel();
  }
  // Invocations and engine calls in flight call back into this object: wait for them (bounded
  // by the 30 s function deadline) before the threads go away. No new turn starts once stopped.
  if (!waitIdleForTest(35'000))
    spdlog::error("connector: work still in flight after 35 s at shutdown");
  impl_->pool.join();
  // The strands and timers of the conversations may live on a lent pool (turn_pool) that is
  // destroyed after this service: nothing of them may outlive stop().
  std::unordered_map<std::string, std::shared_ptr<ConvState>> convs;
  {
    std::lock_guard l(impl_->mu);
    convs.swap(impl_->conversations);
  }
  convs.clear();
  // A cancelled inactivity timer's handler may still be queued on an engine strand: from here on
  // it returns at once; one already running finishes before this returns.
  std::weak_ptr<int> life = impl_->life;
  impl_->life.reset();
  while (!life.expired()) std::this_thread::yield();
}

bool BotService::waitIdleForTest(int timeout_ms) {
  std::unique_lock l(impl_->idle_mu);
  return impl_->idle_cv.wait_for(l, std::chrono::milliseconds(timeout_ms),
                                 [&] { return impl_->busy.load() == 0; });
}

std::uint64_t BotService::skillListReadsForTest() const { return impl_->skill_loads.load(); }

std::uint64_t BotService::strandHandOffsForTest() const { return impl_->strand_hand_offs.load(); }

bool BotService::onEngineStrandForTest(const ConversationId& id) const {
  std::shared_ptr<ConvState> c;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->conversations.find(id.str());
    if (it == impl_->conversations.end()) return false;
    c = it->second;
  }
  auto engine_strand = conv::conversationStrand(impl_->convs, id);
  return engine_strand && *engine_strand == c->strand;
}

std::optional<std::vector<std::string>> BotService::imageAllowlist(const AccountId& acc) const {
  return impl_->allowlistFor(acc);
}

Result<bj::object> BotService::getImageAllowlist(const AccountId& acc) {
  std::lock_guard l(impl_->allow_mu);
  auto it = impl_->stored_allowlists.find(acc.str());
  bj::array entries;
  if (it != impl_->stored_allowlists.end())
    for (const auto& e : it->second) entries.emplace_back(e);
  return bj::object{{"configured", it != impl_->stored_allowlists.end()},
                    {"entries", std::move(entries)}};
}

Result<bj::object> BotService::putImageAllowlist(const AccountId& acc, const bj::object& body) {
  auto entries = parseImageAllowlist(body);
  if (!entries) return std::unexpected(entries.error());
  {
    std::lock_guard w(impl_->allow_write_mu);
    if (auto s = impl_->store.bots().putImageAllowlist(acc, *entries); !s)
      return std::unexpected(s.error());
    std::lock_guard l(impl_->allow_mu);
    impl_->stored_allowlists[acc.str()] = *entries;
  }
  return getImageAllowlist(acc);
}

Status BotService::deleteImageAllowlist(const AccountId& acc) {
  std::lock_guard w(impl_->allow_write_mu);
  if (auto s = impl_->store.bots().deleteImageAllowlist(acc); !s) return s;
  std::lock_guard l(impl_->allow_mu);
  impl_->stored_allowlists.erase(acc.str());
  return {};
}

void BotService::onConversationChanged(const conv::ConversationChanged& e) {
  impl_->conversationChanged(e.conversation);
}
void BotService::onMessageAdded(const conv::MessageAdded& e) {
  impl_->messageAdded(std::make_shared<const conv::MessageAdded>(e));
}
void BotService::onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) {
  impl_->messageAdded(e);
}
void BotService::onRingOffered(const conv::RingOffered& e) { impl_->ringOffered(e.ring); }

Result<bj::object> BotService::createBot(const AccountId& acc, const bj::object& body) {
  auto& st = impl_->store;
  auto cfg = parseBotConfig(body);
  if (!cfg) return std::unexpected(cfg.error());
  if (auto s = impl_->resolveSkills(acc, *cfg); !s) return std::unexpected(s.error());
  if (auto f = st.functions().getFunction(acc, cfg->function); !f)
    return invalid(fmt::format("function {} does not exist in this account (functionUuid)",
                               cfg->function.str()));
  UserId user_id;
  auto uid = json::optString(body, "userId");
  if (!uid) return std::unexpected(uid.error());
  if (*uid) {
    auto u = st.accounts().getUser(acc, UserId(**uid));
    if (!u) return invalid(fmt::format("user {} does not exist (userId)", **uid));
    if (u->type != store::UserType::kBot)
      return invalid(
          fmt::format("user {} is not of type BOT; a bot needs a dedicated BOT user", **uid));
    user_id = u->id;
    if (auto s = impl_->syncUser(acc, user_id, *cfg); !s) return std::unexpected(s.error());
  } else {
    store::User u;
    u.account = acc;
    u.login_name = botUserLogin(cfg->name);
    u.pid = randomUuid();
    u.password_hash = "!";  // no password login
    u.roles = {store::Role::kAgent};
    u.type = store::UserType::kBot;
    u.skills = cfg->skill_ids;
    u.max_open_conversations = impl_->opts.max_open_conversations;
    auto created = st.accounts().createUser(u);
    if (!created) return std::unexpected(created.error());
    user_id = created->id;
  }
  store::BotRecord rec;
  rec.account = acc;
  rec.id = BotId(randomUuid());
  rec.name = cfg->name;
  rec.user = user_id;
  rec.config_json = bj::serialize(botConfigJson(*cfg));
  rec.status = "OFFLINE";
  rec.created_at = rec.updated_at = impl_->clock.nowMs();
  if (auto s = st.bots().createBot(rec); !s) {
    if (s.error().code == ErrorCode::kConflict)
      return conflict(
          fmt::format("user {} already belongs to another bot; a bot user serves one "
                      "bot only",
                      user_id.str()));
    return std::unexpected(s.error());
  }
  return impl_->botJson(rec);
}

Result<bj::object> BotService::updateBot(const AccountId& acc, const BotId& id,
                                         const bj::object& body) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  BotConfig base = botConfigFromStored(rec->config_json);
  auto cfg = parseBotConfig(body, &base);
  if (!cfg) return std::unexpected(cfg.error());
  if (auto s = impl_->resolveSkills(acc, *cfg); !s) return std::unexpected(s.error());
  if (auto f = impl_->store.functions().getFunction(acc, cfg->function); !f)
    return invalid(fmt::format("function {} does not exist in this account", cfg->function.str()));
  if (auto s = impl_->syncUser(acc, rec->user, *cfg); !s) return std::unexpected(s.error());
  rec->name = cfg->name;
  rec->config_json = bj::serialize(botConfigJson(*cfg));
  rec->updated_at = impl_->clock.nowMs();
  if (auto s = impl_->store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  std::shared_ptr<BotRuntime> rt;
  {
    std::lock_guard l(impl_->mu);
    auto it = impl_->bots.find({acc.str(), id.str()});
    if (it != impl_->bots.end()) {
      it->second->config = std::make_shared<const BotConfig>(*cfg);
      rt = it->second;
    }
  }
  if (rt) {
    // Re-reads the user's skills; a bot in SERVICE_INTERRUPTION stays out of routing.
    bool interrupted = false;
    {
      std::lock_guard l(impl_->mu);
      interrupted = rt->status == "SERVICE_INTERRUPTION";
    }
    (void)impl_->setAvailability(
        *rt, interrupted ? store::Availability::kAway : store::Availability::kOnline);
  }
  return impl_->botJson(*rec);
}

Status BotService::deleteBot(const AccountId& acc, const BotId& id) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  impl_->deactivate(acc, id);
  impl_->handOff(acc, id, rec->user, botConfigFromStored(rec->config_json));
  return impl_->store.bots().deleteBot(acc, id);
}

Result<bj::object> BotService::getBot(const AccountId& acc, const BotId& id) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  bj::object o = impl_->botJson(*rec);
  std::lock_guard l(impl_->mu);
  if (auto it = impl_->bots.find({acc.str(), id.str()}); it != impl_->bots.end())
    o["status"] = it->second->status;
  return o;
}

Result<bj::array> BotService::listBots(const AccountId& acc) {
  auto list = impl_->store.bots().listBots(acc);
  if (!list) return std::unexpected(list.error());
  bj::array out;
  for (const auto& b : *list) out.push_back(impl_->botJson(b));
  return out;
}

Result<bj::object> BotService::startBot(const AccountId& acc, const BotId& id) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  BotConfig cfg = botConfigFromStored(rec->config_json);
  if (!cfg.disclaimer_accepted)
    return invalid(
        "the bot cannot start: the data disclaimer has not been accepted; set "
        "disclaimerAccepted: true (PUT bots/{id}) to agree that conversation data is sent to "
        "the function");
  if (auto f = impl_->store.functions().getFunction(acc, cfg.function); !f)
    return invalid(
        fmt::format("the bot cannot start: function {} does not exist", cfg.function.str()));
  {
    std::lock_guard l(impl_->mu);
    if (impl_->bots.contains({acc.str(), id.str()})) return impl_->botJson(*rec);
  }
  rec->status = "ONLINE";
  rec->updated_at = impl_->clock.nowMs();
  if (auto s = impl_->store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  if (auto s = impl_->activate(*rec); !s) return std::unexpected(s.error());
  return impl_->botJson(*rec);
}

Result<bj::object> BotService::stopBot(const AccountId& acc, const BotId& id) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  impl_->deactivate(acc, id);
  rec->status = "OFFLINE";
  rec->updated_at = impl_->clock.nowMs();
  if (auto s = impl_->store.bots().updateBot(*rec); !s) return std::unexpected(s.error());
  // After the status is stored: a crash in between is finished by the next start().
  impl_->handOff(acc, id, rec->user, botConfigFromStored(rec->config_json));
  return impl_->botJson(*rec);
}

Result<bj::object> BotService::testConnection(const AccountId& acc, const BotId& id) {
  auto rec = impl_->store.bots().getBot(acc, id);
  if (!rec) return std::unexpected(rec.error());
  BotConfig cfg = botConfigFromStored(rec->config_json);
  functions::InvokeRequest req;
  req.account = acc;
  req.function = cfg.function;
  req.input_json = bj::serialize(sampleFunctionInput(impl_->clock.nowMs()));
  req.deadline = std::chrono::milliseconds(cfg.escalation.turn_timeout_ms);
  auto p = std::make_shared<std::promise<functions::InvokeResult>>();
  auto fut = p->get_future();
  auto t0 = SteadyClock::now();
  impl_->runner.invoke(std::move(req),
                       [p](functions::InvokeResult r) { p->set_value(std::move(r)); });
  if (fut.wait_for(std::chrono::milliseconds(cfg.escalation.turn_timeout_ms + 5000)) !=
      std::future_status::ready)
    return bj::object{
        {"ok", false},
        {"latencyMs", msSince(t0)},
        {"errors",
         bj::array{bj::object{{"code", std::string(kCodePrefix) + "aivendor.faas.testConnection"},
                              {"path", ""},
                              {"message", "the function did not answer in time"}}}}};
  functions::InvokeResult r = fut.get();
  double latency = msSince(t0);
  bj::array errors;
  bj::value response;
  if (!r.ok) {
    errors.push_back(bj::object{
        {"code", std::string(kCodePrefix) + codes::kInvokeLambda},
        {"path", ""},
        {"message", fmt::format("the function failed: {}: {}", r.error_code, r.error_message)}});
  } else {
    boost::system::error_code ec;
    response = bj::parse(r.result_json, ec);
    PlanOptions po;
    po.channel = cfg.conversation_types.empty() ? store::Channel::kMessaging
                                                : cfg.conversation_types.front();
    po.image_allowlist = impl_->allowlistFor(acc);
    po.conversation_id = "test-connection";
    ResponsePlan plan = planResponse(r.result_json, impl_->validator, po);
    auto add = [&](const Problem& pr) {
      bj::object e = pr.toJson();
      e["code"] = std::string(kCodePrefix) + pr.code;
      errors.push_back(std::move(e));
    };
    if (plan.fatal) add(*plan.fatal);
    for (const auto& pr : plan.refused) add(pr);
  }
  return bj::object{{"ok", errors.empty()},
                    {"latencyMs", latency},
                    {"errors", std::move(errors)},
                    {"response", std::move(response)}};
}

Result<bj::array> BotService::listTurns(const AccountId& acc, const BotId& id, int limit) {
  if (auto rec = impl_->store.bots().getBot(acc, id); !rec) return std::unexpected(rec.error());
  auto turns = impl_->store.bots().listTurns(acc, id, limit);
  if (!turns) return std::unexpected(turns.error());
  bj::array out;
  auto parse = [](const std::string& s) {
    boost::system::error_code ec;
    bj::value v = bj::parse(s, ec);
    return ec ? bj::value(s) : v;
  };
  for (const auto& t : *turns)
    out.push_back(
        bj::object{{"turnId", t.turn_id},
                   {"conversationId", t.conversation.str()},
                   {"ts", t.ts},
                   {"outcome", t.outcome},
                   {"input", parse(t.input_json)},
                   {"response", t.response_json.empty() ? bj::value() : parse(t.response_json)},
                   {"actions", parse(t.actions_json)},
                   {"timings", parse(t.timings_json)},
                   {"error", t.error}});
  return out;
}

std::string BotService::prometheusText() const {
  std::lock_guard l(impl_->mu);
  const Metrics& m = impl_->metrics;
  std::string out;
  out +=
      "# HELP parley_bot_turns_total Bot turns by outcome.\n# TYPE parley_bot_turns_total "
      "counter\n";
  for (const auto& [k, v] : m.turns)
    out += fmt::format("parley_bot_turns_total{{bot=\"{}\",outcome=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_escalations_total Error escalations.\n# TYPE parley_bot_escalations_total "
      "counter\n";
  for (const auto& [k, v] : m.escalations)
    out += fmt::format("parley_bot_escalations_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_discarded_total Responses discarded because the conversation changed "
      "owner.\n# TYPE parley_bot_discarded_total counter\n";
  for (const auto& [k, v] : m.discarded)
    out += fmt::format("parley_bot_discarded_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_retries_total Re-invocations after a failed attempt.\n# TYPE "
      "parley_bot_retries_total counter\n";
  for (const auto& [k, v] : m.retries)
    out += fmt::format("parley_bot_retries_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_invoke_ms Function invocation wall time.\n# TYPE parley_bot_invoke_ms "
      "summary\n";
  for (const auto& [k, v] : m.invoke_ms_sum) {
    out += fmt::format("parley_bot_invoke_ms_sum{{bot=\"{}\"}} {:.3f}\n", k, v);
    out += fmt::format("parley_bot_invoke_ms_count{{bot=\"{}\"}} {}\n", k,
                       m.invoke_count.count(k) ? m.invoke_count.at(k) : 0);
  }
  out +=
      "# HELP parley_bot_hook_failures_total Failed pre/post/error hook invocations.\n# TYPE "
      "parley_bot_hook_failures_total counter\n";
  for (const auto& [k, v] : m.hook_failures)
    out += fmt::format("parley_bot_hook_failures_total{{bot=\"{}\",hook=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_inactivity_total Chat inactivity warnings and closes.\n# TYPE "
      "parley_bot_inactivity_total counter\n";
  for (const auto& [k, v] : m.inactivity)
    out += fmt::format("parley_bot_inactivity_total{{bot=\"{}\",kind=\"{}\"}} {}\n", k.first,
                       k.second, v);
  out +=
      "# HELP parley_bot_conversation_limit_total Conversations escalated because the bot held "
      "its open-conversation limit.\n# TYPE parley_bot_conversation_limit_total counter\n";
  for (const auto& [k, v] : m.limit_reached)
    out += fmt::format("parley_bot_conversation_limit_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_turn_exceptions_total Exceptions caught by a conversation's fence (the "
      "turn they interrupted is escalated or recorded as ERROR).\n# TYPE "
      "parley_bot_turn_exceptions_total counter\n";
  for (const auto& [k, v] : m.turn_exceptions)
    out += fmt::format("parley_bot_turn_exceptions_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_handed_off_total Open conversations handed on because their bot was "
      "stopped or deleted.\n# TYPE parley_bot_handed_off_total counter\n";
  for (const auto& [k, v] : m.handed_off)
    out += fmt::format("parley_bot_handed_off_total{{bot=\"{}\"}} {}\n", k, v);
  out +=
      "# HELP parley_bot_turn_record_failures_total Turn records the store failed to write.\n"
      "# TYPE parley_bot_turn_record_failures_total counter\n";
  out +=
      fmt::format("parley_bot_turn_record_failures_total {}\n", impl_->turn_record_failures.load());
  out +=
      "# HELP parley_bot_status Running bots by status (1 = current).\n# TYPE parley_bot_status "
      "gauge\n";
  for (const auto& [k, b] : impl_->bots)
    out += fmt::format("parley_bot_status{{bot=\"{}\",status=\"{}\"}} 1\n", k.second, b->status);
  out +=
      "# HELP parley_bot_conversations Conversations tracked by the connector.\n# TYPE "
      "parley_bot_conversations gauge\n";
  out += fmt::format("parley_bot_conversations {}\n", impl_->conversations.size());
  return out;
}

// ---------------------------------------------------------------------------------------------
// REST

void BotService::handle(api::Request request, std::function<void(api::Response)> done) {
  asio::post(impl_->pool, [this, request = std::move(request), done = std::move(done)]() mutable {
    api::Response resp;
    try {
      const auto& p = request.path;
      const AccountId& acc = request.caller.account;
      // The policy's answer (docs/authorization.md); nullopt when allowed.
      auto refused = [&](policy::Action action) -> std::optional<api::Response> {
        if (auto st = policy::authorize(request.caller.subject(), action); !st)
          return errorResponse(st.error());
        return std::nullopt;
      };
      auto ok = [](int status, const bj::value& v) {
        return api::Response{status, bj::serialize(v)};
      };
      auto body = [&]() -> Result<bj::object> {
        if (request.body.empty()) return bj::object{};
        return json::parseObject(request.body);
      };
      if (p.size() == 1 && request.method == "GET") {
        if (auto no = refused(policy::Action::kBotsList)) {
          resp = *no;
        } else {
          auto r = listBots(acc);
          resp = r ? ok(200, *r) : errorResponse(r.error());
        }
      } else if (p.size() == 1 && request.method == "POST") {
        if (auto no = refused(policy::Action::kBotsCreate)) {
          resp = *no;
        } else if (auto b = body(); !b) {
          resp = errorResponse(b.error());
        } else {
          auto r = createBot(acc, *b);
          resp = r ? ok(201, *r) : errorResponse(r.error());
        }
      } else if (p.size() == 2 && p[1] == "image-allowlist") {
        if (request.method == "GET") {
          if (auto no = refused(policy::Action::kImageAllowlistGet)) {
            resp = *no;
          } else {
            auto r = getImageAllowlist(acc);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "PUT") {
          if (auto no = refused(policy::Action::kImageAllowlistPut)) {
            resp = *no;
          } else if (auto b = body(); !b) {
            resp = errorResponse(b.error());
          } else {
            auto r = putImageAllowlist(acc, *b);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "DELETE") {
          if (auto no = refused(policy::Action::kImageAllowlistDelete)) {
            resp = *no;
          } else {
            auto r = deleteImageAllowlist(acc);
            resp = r ? ok(200, bj::object{{"deleted", true}}) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(
              Error{ErrorCode::kInvalid, "use GET, PUT or DELETE on bots/image-allowlist"});
        }
      } else if (p.size() == 2) {
        BotId id(p[1]);
        if (request.method == "GET") {
          if (auto no = refused(policy::Action::kBotsGet)) {
            resp = *no;
          } else {
            auto r = getBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "PUT" || request.method == "PATCH") {
          if (auto no = refused(policy::Action::kBotsUpdate)) {
            resp = *no;
          } else if (auto b = body(); !b) {
            resp = errorResponse(b.error());
          } else {
            auto r = updateBot(acc, id, *b);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (request.method == "DELETE") {
          if (auto no = refused(policy::Action::kBotsDelete)) {
            resp = *no;
          } else {
            auto r = deleteBot(acc, id);
            resp = r ? ok(200, bj::object{{"deleted", true}}) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(Error{ErrorCode::kInvalid, "use GET, PUT or DELETE on bots/{id}"});
        }
      } else if (p.size() == 3) {
        BotId id(p[1]);
        const std::string& op = p[2];
        if (op == "start" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsStart)) {
            resp = *no;
          } else {
            auto r = startBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "stop" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsStop)) {
            resp = *no;
          } else {
            auto r = stopBot(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "test-connection" && request.method == "POST") {
          if (auto no = refused(policy::Action::kBotsTestConnection)) {
            resp = *no;
          } else {
            auto r = testConnection(acc, id);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else if (op == "turns" && request.method == "GET") {
          if (auto no = refused(policy::Action::kBotsTurns)) {
            resp = *no;
          } else {
            int limit = 50;
            if (auto it = request.query.find("limit"); it != request.query.end())
              limit = std::clamp(std::atoi(it->second.c_str()), 1, 500);
            auto r = listTurns(acc, id, limit);
            resp = r ? ok(200, *r) : errorResponse(r.error());
          }
        } else {
          resp = errorResponse(Error{ErrorCode::kNotFound,
                                     "unknown bots call; use POST bots/{id}/start|stop|"
                                     "test-connection or GET bots/{id}/turns"});
        }
      } else {
        resp = errorResponse(Error{ErrorCode::kNotFound, "unknown bots call"});
      }
    } catch (const std::exception& e) {
      resp = errorResponse(Error{ErrorCode::kInternal, std::string("bots: ") + e.what()});
    }
    done(std::move(resp));
  });
}

}  // namespace parley::connector
