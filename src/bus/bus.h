#pragma once

// The bus between the nodes of a cluster: publish/subscribe by subject. Two implementations:
// the in-process bus (makeLocalBus, the default: a node alone, nothing leaves the process) and
// NATS JetStream (connectNatsBus, `parley serve --bus nats://HOST:PORT`).
//
// Subjects are dot-separated tokens of [A-Za-z0-9_-] (subjectToken() makes one from any text);
// a subscription's filter may end with `>` (every subject under that prefix) or use `*` for one
// token, as NATS does.
//
// Delivery: at least once, in publish order per subject for one publisher. Every delivered
// message carries a sequence that only grows per subject (JetStream: the stream sequence; gaps
// are allowed), so a subscriber drops what it has already seen by keeping the last sequence.
// JetStream stores what is published for `NatsOptions::max_age` and a subscription that lost its
// connection resumes after the last sequence it got (messages published meanwhile are delivered
// late, not lost, within that age).
//
// Threading: thread-safe. publish() never blocks: `done` is called once the bus acknowledged the
// message (JetStream: stored) or failed, on a bus thread. Handlers are called on a bus thread,
// one message at a time per subscription, in order; they must not block for long (post work
// elsewhere) and must not destroy their own subscription. Destroying a Subscription waits for a
// handler call in progress and stops the deliveries. The bus must outlive its subscriptions.
// Which bus thread: see Delivery (a listener's choice; every other subscription has its own).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace parley::bus {

struct BusMessage {
  std::string subject;
  std::string data;
  // Grows per subject (see above); never 0.
  std::uint64_t sequence = 0;
};

using Handler = std::function<void(const BusMessage&)>;

// Which thread calls a listener's handler (NATS; the in-process bus calls every handler on the
// publisher's thread whatever this says). Either way one message at a time, in order.
enum class Delivery {
  // A thread of the subscription's own: a handler that takes its time holds up only its own
  // subscription. What subscribe() and serve() always use; for the few fixed subscriptions of a
  // node (invalidations, forwarded commands, announcements).
  kOwnThread,
  // One of the bus's shared delivery threads (NATS: `NatsOptions::shared_delivery_threads`), the
  // subscription bound to one of them for its whole life: any number of subscriptions adds no
  // thread, but a handler that blocks holds up every subscription bound to the same thread. For
  // the many subscriptions whose handlers only hand the message on (the conversation relay's,
  // one per watched consumer).
  kShared,
};

// Sends the answer to a request. Call it at most once, from any thread, before the bus is
// destroyed; not calling it lets the requester time out.
using Reply = std::function<void(std::string data)>;
// Serves requests: `request.sequence` is 0 (requests are not stored). Called like a Handler (a
// bus thread, one request at a time per subscription, must not block): answer later through
// `reply`.
using Responder = std::function<void(const BusMessage& request, Reply reply)>;

class Subscription {
 public:
  virtual ~Subscription() = default;
};

class Bus {
 public:
  virtual ~Bus() = default;

  // Publishes `data` on `subject` (no wildcards). `done` (may be empty) gets the outcome.
  virtual void publish(std::string subject, std::string data,
                       std::function<void(Status)> done = {}) = 0;

  // Delivers every message published on a subject matching `filter` from now on.
  virtual Result<std::unique_ptr<Subscription>> subscribe(std::string filter, Handler handler) = 0;

  // Request/reply, not stored (NATS: core NATS, outside the stream; its subjects must not be
  // under the stream's `<subject_prefix>.`, Invalid otherwise). Delivered at most once, to one
  // responder; nothing is kept for a responder that is not there.
  //
  // Answers requests on `subject` (no wildcards) until the Subscription is destroyed.
  virtual Result<std::unique_ptr<Subscription>> serve(std::string subject, Responder responder) = 0;
  // Sends `data` to the responder of `subject`; `done` gets its answer, or: Unavailable "no
  // responders" when nobody serves the subject (the request reached nobody), Timeout when no
  // answer came within `timeout` (the responder may or may not have acted on it), Unavailable
  // when too many requests wait for answers. `done` is called once, on a bus thread (or, on the
  // in-process bus, on the thread that replied).
  virtual void request(std::string subject, std::string data, std::chrono::milliseconds timeout,
                       std::function<void(Result<std::string>)> done) = 0;

  // Transient broadcast: every current listener of `subject` gets `data`, at most once; nothing
  // is stored (NATS: core NATS, so a listener that is disconnected, or starts later, never gets
  // it). For state a sender repeats periodically (the agents' routing state of each node). The
  // subject follows the request subjects' rule (Invalid under the stream's `<subject_prefix>.`);
  // Unavailable when the bus cannot send it now.
  virtual Status broadcast(std::string subject, std::string data) = 0;
  // Delivers every broadcast on a subject matching `filter` from now on (sequence 0), like a
  // Handler of subscribe(): a bus thread, one message at a time, in order per sender. "From now
  // on" holds when it returns: NATS waits for the server to confirm the subscription (one round
  // trip, at most 2 s; blocking; not while disconnected, when the subscription starts with the
  // reconnection), so a broadcast sent after listen() returned reaches it. `delivery`: which
  // thread calls `handler` (above).
  virtual Result<std::unique_ptr<Subscription>> listen(
      std::string filter, Handler handler, Delivery delivery = Delivery::kOwnThread) = 0;

  // True when other processes see what is published (NATS); false for the in-process bus, where
  // a node is alone and publishing what only it would receive is pointless.
  virtual bool shared() const = 0;

  // "local" or the NATS URL.
  virtual std::string describe() const = 0;

  // Whether the bus reaches the other nodes now: NATS, connected to the server (false while it
  // reconnects); always true for the in-process bus. A partition that leaves the TCP connection
  // open is noticed by the pings (NatsOptions::ping_interval). Non-blocking.
  virtual bool connected() const { return true; }
};

// The in-process bus. Handlers run on the publisher's thread, before publish() returns (then
// `done(ok)`); sequences are exact per subject (1, 2, 3, ...). A request is handed to the
// responder on the requester's thread; its `timeout` is not enforced (the responder is in this
// process and answers or drops the Reply: a dropped Reply answers Timeout).
std::unique_ptr<Bus> makeLocalBus();

// `text` as one subject token: bytes outside [A-Za-z0-9_-] become `_`, "" becomes `_`.
std::string subjectToken(std::string_view text);

// Whether `subject` matches `filter` (tokens; `*` one token, a last `>` one or more).
bool subjectMatches(std::string_view filter, std::string_view subject);

}  // namespace parley::bus
