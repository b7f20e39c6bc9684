#pragma once

// Cluster-wide invalidation: when a node changes something other nodes keep in memory (a
// function's deployment, a bot, an account's skills, an image allowlist, the tokens of an
// account the gateway verified: kind "credentials"), it publishes what
// changed on the subject `parley.inval`; every other node calls the handler registered for that
// kind, which reloads or drops its copy. The data is JSON
// `{"origin":"<this process>","kind":"function","account":"…","id":"…"}`; a node ignores its
// own messages (it applied the change already) and messages it cannot read or whose kind it
// does not know (logged).
//
// On the in-process bus (one node) nothing is published and nothing subscribed: there is nobody
// else to tell.
//
// Threading: publish() is thread-safe and never blocks. Handlers run on a bus thread, one at a
// time, and must not block (post the reload elsewhere). Register every handler with on() before
// start(). Destroy this before what its handlers touch.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "bus/bus.h"
#include "common/ids.h"
#include "common/result.h"

namespace parley::bus {

struct Invalidation {
  std::string kind;  // "function", "bot", "skills", "image-allowlist", ...
  AccountId account;
  std::string id;  // the object's id within the account ("" for account-wide kinds)
};

class Invalidations {
 public:
  static constexpr const char* kSubject = "parley.inval";

  explicit Invalidations(Bus& bus);
  ~Invalidations();
  Invalidations(const Invalidations&) = delete;
  Invalidations& operator=(const Invalidations&) = delete;

  using Handler = std::function<void(const Invalidation&)>;
  // REQUIRES: before start().
  void on(const std::string& kind, Handler handler);
  // Subscribes (a shared bus only). Unavailable when the bus refuses.
  Status start();

  // Drops the subscription: no handler is called once it returns. publish() still works.
  void stop();

  // Tells the other nodes (a shared bus only). A failed publish is logged: the other nodes keep
  // their copy until the next change of it or their restart.
  void publish(Invalidation what);

  // This process's origin token (random per process).
  const std::string& origin() const { return origin_; }

 private:
  void receive(const BusMessage& m);

  Bus& bus_;
  const std::string origin_;
  std::map<std::string, Handler, std::less<>> handlers_;
  std::unique_ptr<Subscription> sub_;
};

}  // namespace parley::bus
