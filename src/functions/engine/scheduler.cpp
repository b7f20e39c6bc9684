#include "functions/engine/scheduler.h"

#include <cmath>
#include <limits>

namespace parley::functions::engine {

Scheduler::Push Scheduler::push(Item item) {
  if (queued_ >= options_.max_queued) return Push::kQueueFull;
  std::size_t& per_fn = per_function_[item.function_key];
  if (per_fn >= options_.max_queued_per_function) return Push::kFunctionQueueFull;
  ++per_fn;
  ++queued_;
  auto [it, fresh] = accounts_.try_emplace(item.account);
  if (it->second.q.empty()) ring_.push_back(item.account);
  std::string key = item.function_key;
  it->second.q.push(key, std::move(item), std::numeric_limits<std::size_t>::max(),
                    std::numeric_limits<std::size_t>::max());
  return Push::kQueued;
}

void Scheduler::pushFront(Item item) {
  ++per_function_[item.function_key];
  ++queued_;
  auto [it, fresh] = accounts_.try_emplace(item.account);
  if (it->second.q.empty()) ring_.push_front(item.account);
  std::string key = item.function_key;
  it->second.q.pushFront(key, std::move(item));
}

std::vector<Scheduler::Item> Scheduler::takeAll() {
  std::vector<Item> out;
  for (auto& [acc, aq] : accounts_) {
    while (auto item = aq.q.pop()) out.push_back(std::move(*item));
  }
  accounts_.clear();
  ring_.clear();
  per_function_.clear();
  queued_ = 0;
  return out;
}

void Scheduler::addWorker(int worker, WorkerKind kind) {
  WorkerState& w = workers_[worker];
  w = WorkerState{};
  w.kind = kind;
}

void Scheduler::removeWorker(int worker) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  if (it->second.busy) {
    if (auto b = account_busy_.find(it->second.busy_account);
        b != account_busy_.end() && b->second > 0)
      --b->second;
  }
  workers_.erase(it);
  // Its functions get a new home where they are dispatched next.
  std::erase_if(home_, [&](const auto& kv) { return kv.second == worker; });
  std::erase_if(account_home_, [&](const auto& kv) { return kv.second == worker; });
  std::erase_if(quarantine_worker_, [&](const auto& kv) { return kv.second == worker; });
}

void Scheduler::setBusy(int worker, const std::string& account, Time now) {
  auto it = workers_.find(worker);
  if (it == workers_.end() || it->second.busy) return;
  it->second.busy = true;
  it->second.busy_account = account;
  it->second.busy_since = now;
  ++account_busy_[account];
}

void Scheduler::setFree(int worker, Time now) {
  auto it = workers_.find(worker);
  if (it == workers_.end() || !it->second.busy) return;
  WorkerState& w = it->second;
  w.busy = false;
  // The task's wall time: from the long-task mark to now, plus the mark itself.
  Usage& u = usage_[w.busy_account];
  u.ms = usageMs(w.busy_account, now) +
         std::chrono::duration<double, std::milli>(now - w.busy_since + options_.long_task).count();
  u.at = now;
  auto b = account_busy_.find(w.busy_account);
  if (b != account_busy_.end() && --b->second == 0) account_busy_.erase(b);
  w.busy_account.clear();
}

void Scheduler::settled(int worker, std::uint64_t id) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return;
  if (auto f = it->second.fresh.find(id); f != it->second.fresh.end()) {
    auto n = it->second.fresh_per_account.find(f->second);
    if (n != it->second.fresh_per_account.end() && --n->second == 0)
      it->second.fresh_per_account.erase(n);
    it->second.fresh.erase(f);
  }
  if (it->second.reserved == id) {
    it->second.reserved = 0;
    it->second.reserved_account.clear();
  }
}

double Scheduler::usageMs(const std::string& account, Time now) const {
  auto it = usage_.find(account);
  if (it == usage_.end()) return 0;
  double age = std::chrono::duration<double, std::milli>(now - it->second.at).count();
  double half = static_cast<double>(options_.heavy_half_life.count());
  if (age <= 0 || half <= 0) return it->second.ms;
  return it->second.ms * std::exp2(-age / half);
}

bool Scheduler::heavy(const std::string& account, Time now) const {
  if (busyWorkersOf(account) > 0) return true;
  return usageMs(account, now) >= static_cast<double>(options_.heavy_after.count());
}

bool Scheduler::WorkerState::holds(const std::string& account) const {
  return (busy && busy_account == account) || fresh_per_account.contains(account);
}

bool Scheduler::WorkerState::heldByOtherThan(const std::string& account) const {
  if (busy && busy_account != account) return true;
  if (reserved != 0 && reserved_account != account) return true;
  return fresh_per_account.size() > (fresh_per_account.contains(account) ? 1u : 0u);
}

void Scheduler::finished(int worker, const std::string& account) {
  if (auto it = workers_.find(worker); it != workers_.end() && it->second.in_flight > 0)
    --it->second.in_flight;
  if (auto a = account_in_flight_.find(account); a != account_in_flight_.end()) {
    if (--a->second == 0) account_in_flight_.erase(a);
  }
}

void Scheduler::quarantine(const std::string& function_key) { quarantined_.insert(function_key); }

void Scheduler::release(const std::string& function_key) {
  quarantined_.erase(function_key);
  quarantine_worker_.erase(function_key);
}

bool Scheduler::eligible(int /*worker*/, const WorkerState& w) const {
  return !w.busy && w.in_flight < options_.max_in_flight_per_worker;
}

int Scheduler::pick(const Item& item, bool heavy) {
  if (auto a = account_in_flight_.find(item.account);
      a != account_in_flight_.end() && a->second >= options_.max_in_flight_per_account)
    return -1;
  if (auto b = account_busy_.find(item.account);
      b != account_busy_.end() && b->second >= options_.max_busy_workers_per_account)
    return -1;
  if (quarantined_.contains(item.function_key)) {
    auto q = quarantine_worker_.find(item.function_key);
    if (q == quarantine_worker_.end()) {
      // The quarantine worker holding the fewest quarantined functions.
      int best = -1;
      std::size_t best_n = std::numeric_limits<std::size_t>::max();
      for (auto& [id, w] : workers_) {
        if (w.kind != WorkerKind::kQuarantine) continue;
        std::size_t n = 0;
        for (auto& [k, qw] : quarantine_worker_) n += qw == id;
        if (n < best_n || (n == best_n && id < best)) best = id, best_n = n;
      }
      if (best < 0) return -1;
      q = quarantine_worker_.emplace(item.function_key, best).first;
    }
    auto w = workers_.find(q->second);
    return w != workers_.end() && eligible(w->first, w->second) ? w->first : -1;
  }
  // The busy-worker cap counts the workers the account holds from dispatch on: another one
  // only while it holds fewer than the cap.
  const bool may_take_another = heldBy(item.account) < options_.max_busy_workers_per_account;
  auto usable = [&](int id) {
    auto w = workers_.find(id);
    if (w == workers_.end() || w->second.kind != WorkerKind::kShared || !eligible(id, w->second))
      return false;
    const WorkerState& ws = w->second;
    // A worker reserved for a heavy account's job runs demoted: nobody else's work goes there.
    if (ws.reserved != 0 && (heavy || ws.reserved_account != item.account)) return false;
    if (!may_take_another && !ws.holds(item.account)) return false;
    // A heavy account's job starts demoted: only on a worker no other account's job holds.
    if (heavy && ws.heldByOtherThan(item.account)) return false;
    return true;
  };
  // Workers no other account holds first: a job there does not wait behind another account's
  // task that may turn out long. Among them (else among all usable ones) the function's home,
  // else, for a function without one, its account's home, else the least loaded worker (ties
  // rotate).
  std::vector<int> ids;
  ids.reserve(workers_.size());
  for (auto& [id, w] : workers_) ids.push_back(id);
  const std::size_t n = ids.size(), start = next_rr_++;
  const auto home = home_.find(item.function_key);
  for (int pass = 0; pass < 2; ++pass) {
    auto ok = [&](int id) {
      return usable(id) && (pass == 1 || !workers_.at(id).heldByOtherThan(item.account));
    };
    if (home != home_.end()) {
      if (ok(home->second)) return home->second;
    } else if (auto a = account_home_.find(item.account);
               a != account_home_.end() && ok(a->second)) {
      return a->second;
    }
    int best = -1;
    std::size_t best_load = std::numeric_limits<std::size_t>::max();
    for (std::size_t i = 0; i < n; ++i) {
      int id = ids[(start + i) % n];
      if (!ok(id)) continue;
      std::size_t load = workers_.at(id).in_flight;
      if (load < best_load) best = id, best_load = load;
    }
    if (best >= 0) return best;
  }
  return -1;
}

bool Scheduler::assign(int worker, const Item& item, bool heavy, Time now, int* moved_from) {
  WorkerState& w = workers_.at(worker);
  ++w.in_flight;
  if (w.fresh.emplace(item.id, item.account).second) ++w.fresh_per_account[item.account];
  if (heavy) {
    w.reserved = item.id;
    w.reserved_account = item.account;
  }
  ++account_in_flight_[item.account];
  if (quarantined_.contains(item.function_key)) return true;
  auto [home, first] = home_.try_emplace(item.function_key, worker);
  if (first) {
    account_home_.try_emplace(item.account, worker);
    return true;
  }
  if (home->second == worker) return true;
  // A detour. The home moves only off a worker that is gone or stuck in one long task.
  auto h = workers_.find(home->second);
  if (h == workers_.end() ||
      (h->second.busy && now - h->second.busy_since >= options_.rehome_after)) {
    if (h != workers_.end()) *moved_from = home->second;
    home->second = worker;
    return true;
  }
  return false;
}

void Scheduler::noteAffinity(const std::string& function_key, int worker,
                             const std::string& account) {
  home_[function_key] = worker;
  if (account.empty()) return;
  auto [a, fresh] = account_home_.try_emplace(account, worker);
  if (!fresh && !workers_.contains(a->second)) a->second = worker;
}

int Scheduler::homeOf(const std::string& function_key) const {
  auto it = home_.find(function_key);
  return it == home_.end() ? -1 : it->second;
}

int Scheduler::accountHomeOf(const std::string& account) const {
  auto it = account_home_.find(account);
  return it == account_home_.end() ? -1 : it->second;
}

std::size_t Scheduler::homedOn(int worker) const {
  std::size_t n = 0;
  for (auto& [key, w] : home_) n += w == worker;
  return n;
}

std::vector<Scheduler::Dispatch> Scheduler::schedule(Time now) {
  std::vector<Dispatch> out;
  bool progress = true;
  while (progress && !ring_.empty()) {
    progress = false;
    // One item per account per round: accounts are served round-robin.
    for (std::size_t n = ring_.size(); n > 0; --n) {
      std::string acc = std::move(ring_.front());
      ring_.pop_front();
      auto it = accounts_.find(acc);
      AccountQueue& aq = it->second;
      // A function that cannot start (quarantined, no worker for it) does not hold up the
      // account's other functions: look at each function of the account once.
      const bool is_heavy = heavy(acc, now);
      for (std::size_t tries = aq.q.keys(); tries > 0; --tries) {
        Item* head = aq.q.peek();
        // Quarantined functions run on their own workers, demoted only by the long-task mark.
        const bool demote = is_heavy && !quarantined_.contains(head->function_key);
        int w = pick(*head, demote);
        if (w >= 0) {
          Item item = std::move(*aq.q.pop());
          if (auto pf = per_function_.find(item.function_key);
              pf != per_function_.end() && --pf->second == 0)
            per_function_.erase(pf);
          --queued_;
          int moved_from = -1;
          const bool home = assign(w, item, demote, now, &moved_from);
          out.push_back(Dispatch{std::move(item), w, demote, home, moved_from});
          progress = true;
          break;
        }
        aq.q.rotate();
      }
      if (aq.q.empty()) {
        accounts_.erase(it);
      } else {
        ring_.push_back(std::move(acc));
      }
    }
  }
  return out;
}

bool Scheduler::wantsSharedWorker(std::size_t starting) const {
  std::size_t shared = 0, free = 0;
  for (auto& [id, w] : workers_) {
    if (w.kind != WorkerKind::kShared) continue;
    ++shared;
    if (!w.busy && w.reserved == 0) ++free;
  }
  return free + starting < options_.min_free_workers && shared + starting < options_.max_workers;
}

bool Scheduler::spareFreeWorker(std::size_t starting) const {
  std::size_t free = 0;
  for (auto& [id, w] : workers_)
    free += w.kind == WorkerKind::kShared && !w.busy && w.reserved == 0;
  return free + starting > options_.min_free_workers;
}

bool Scheduler::wantsQuarantineWorker(std::size_t starting) const {
  std::size_t have = 0;
  for (auto& [id, w] : workers_) have += w.kind == WorkerKind::kQuarantine;
  // One per quarantined function, up to the limit (beyond it they share).
  return quarantined_.size() > have + starting && have + starting < options_.max_quarantine_workers;
}

std::size_t Scheduler::inFlight(int worker) const {
  auto it = workers_.find(worker);
  return it == workers_.end() ? 0 : it->second.in_flight;
}

bool Scheduler::busy(int worker) const {
  auto it = workers_.find(worker);
  return it != workers_.end() && it->second.busy;
}

std::size_t Scheduler::sharedWorkers() const {
  std::size_t n = 0;
  for (auto& [id, w] : workers_) n += w.kind == WorkerKind::kShared;
  return n;
}

std::size_t Scheduler::busyWorkersOf(const std::string& account) const {
  auto it = account_busy_.find(account);
  return it == account_busy_.end() ? 0 : it->second;
}

std::size_t Scheduler::heldBy(const std::string& account) const {
  std::size_t n = 0;
  for (auto& [id, w] : workers_) n += w.holds(account);
  return n;
}

bool Scheduler::reserved(int worker) const {
  auto it = workers_.find(worker);
  return it != workers_.end() && it->second.reserved != 0;
}

std::size_t Scheduler::inFlightOf(const std::string& account) const {
  auto it = account_in_flight_.find(account);
  return it == account_in_flight_.end() ? 0 : it->second;
}

}  // namespace parley::functions::engine
