#pragma once

// The NATS JetStream bus (nats.c). One connection per bus, reconnecting forever; one stream
// (`stream`, subjects `<subject_prefix>.>`, file storage, messages kept `max_age`) created by
// the first node and shared by all. publish() goes through one publisher thread that waits for
// each message's acknowledgement (the stream stored it) before the next, so one node's messages
// are stored in the order it published them; subscribe() makes an ordered push consumer
// delivering new messages only.

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
};

// `nats://HOST:PORT` (also `tls://`); Invalid with the reason otherwise.
Status checkNatsUrl(const std::string& url);

// Connects and makes sure the stream exists. Unavailable when the server cannot be reached or
// has no JetStream.
Result<std::unique_ptr<Bus>> connectNatsBus(const std::string& url, NatsOptions options = {});

}  // namespace parley::bus
