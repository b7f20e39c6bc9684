#pragma once

// The NATS JetStream bus (nats.c). One connection per bus, reconnecting forever; one stream
// (`stream`, subjects `<subject_prefix>.>`, file storage, messages kept `max_age`) created by
// the first node and shared by all. publish() goes through one publisher thread that waits for
// each message's acknowledgement (the stream stored it) before the next, so one node's messages
// are stored in the order it published them; subscribe() makes an ordered push consumer
// delivering new messages only. Deliveries come through nats.c's shared delivery threads
// (`shared_delivery_threads`); see Delivery in bus.h for which handlers run there.

#include <chrono>
#include <memory>
#include <string>

#include "bus/bus.h"
#include "common/result.h"

namespace parley::bus {

struct NatsOptions {
  std::string stream = "PARLEY";
  std::string subject_prefix = "parley";
  // How long the stream keeps a message (what a reconnecting subscriber can still get).
  std::chrono::milliseconds max_age{std::chrono::minutes(10)};
  // Connect timeout of the first connection; failing it fails connectNatsBus.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  // Messages waiting for the publisher thread at most; more fail with Unavailable at once.
  std::size_t max_pending = 65536;
  // Requests waiting for their answers at most (request()); more fail with Unavailable at once.
  std::size_t max_requests = 4096;
  std::string name = "parley";  // the connection's name (shows in NATS monitoring)
  // A connection whose server answered none of `max_pings_out` pings sent `ping_interval` apart
  // is taken as lost (reconnecting; Bus::connected() false): a partition that leaves the TCP
  // connection open is noticed within about ping_interval x (max_pings_out + 1). A closed
  // connection is noticed at once. Defaults: 2 s, 3 (nats.c's own: 2 min, 2).
  std::chrono::milliseconds ping_interval{std::chrono::seconds(2)};
  int max_pings_out = 3;
  // nats.c's shared delivery threads: every subscription's messages come off the connection
  // through them, each subscription bound to one (in order). Listeners with Delivery::kShared
  // run their handlers there, so any number of them adds no thread; the others (subscribe(),
  // serve(), the answers to requests, Delivery::kOwnThread listeners) each have a thread of their
  // own as well. The pool is the process's (nats.c's): it grows to the largest size asked for by
  // any bus of the process and never shrinks; at least 1.
  int shared_delivery_threads = 4;
};

// `nats://HOST:PORT` (also `tls://`); Invalid with the reason otherwise.
Status checkNatsUrl(const std::string& url);

// Connects and makes sure the stream exists. Unavailable when the server cannot be reached or
// has no JetStream.
Result<std::unique_ptr<Bus>> connectNatsBus(const std::string& url, NatsOptions options = {});

}  // namespace parley::bus
