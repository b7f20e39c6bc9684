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

  // True when other processes see what is published (NATS); false for the in-process bus, where
  // a node is alone and publishing what only it would receive is pointless.
  virtual bool shared() const = 0;

  // "local" or the NATS URL.
  virtual std::string describe() const = 0;
};

// The in-process bus. Handlers run on the publisher's thread, before publish() returns (then
// `done(ok)`); sequences are exact per subject (1, 2, 3, ...).
std::unique_ptr<Bus> makeLocalBus();

// `text` as one subject token: bytes outside [A-Za-z0-9_-] become `_`, "" becomes `_`.
std::string subjectToken(std::string_view text);

// Whether `subject` matches `filter` (tokens; `*` one token, a last `>` one or more).
bool subjectMatches(std::string_view filter, std::string_view subject);

}  // namespace parley::bus
