// Cluster-wide invalidation over the bus.

#include "bus/invalidations.h"

#include <spdlog/spdlog.h>

#include "common/json.h"
#include "common/random.h"

namespace parley::bus {

namespace bj = boost::json;

Invalidations::Invalidations(Bus& bus) : bus_(bus), origin_(randomHex(8)) {}

Invalidations::~Invalidations() { sub_.reset(); }

void Invalidations::on(const std::string& kind, Handler handler) {
  handlers_[kind] = std::move(handler);
}

Status Invalidations::start() {
  if (!bus_.shared()) return {};
  auto s = bus_.subscribe(kSubject, [this](const BusMessage& m) { receive(m); });
  if (!s) return std::unexpected(s.error());
  sub_ = std::move(*s);
  return {};
}

void Invalidations::stop() { sub_.reset(); }

void Invalidations::publish(Invalidation what) {
  if (!bus_.shared()) return;
  bj::object o{
      {"origin", origin_}, {"kind", what.kind}, {"account", what.account.str()}, {"id", what.id}};
  bus_.publish(kSubject, json::dump(o), [what](Status s) {
    if (!s)
      spdlog::error("bus: invalidation of {} {} (account {}) not published: {}", what.kind, what.id,
                    what.account.str(), s.error().message);
  });
}

void Invalidations::receive(const BusMessage& m) {
  auto o = json::parseObject(m.data);
  if (!o) {
    spdlog::warn("bus: unreadable invalidation ignored: {}", o.error().message);
    return;
  }
  if (json::getString(*o, "origin") == origin_) return;
  Invalidation what{json::getString(*o, "kind"), AccountId(json::getString(*o, "account")),
                    json::getString(*o, "id")};
  auto h = handlers_.find(what.kind);
  if (h == handlers_.end()) {
    spdlog::warn("bus: invalidation of unknown kind '{}' ignored", what.kind);
    return;
  }
  spdlog::debug("bus: {} {} (account {}) changed on another node", what.kind, what.id,
                what.account.str());
  h->second(what);
}

}  // namespace parley::bus
