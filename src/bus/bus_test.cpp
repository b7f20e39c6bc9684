// The bus contract, on the in-process bus and on NATS JetStream (a nats-server of its own per
// test binary; those cases are the ctest test `bus_nats`, label `cluster`).

#include "bus/bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bus/invalidations.h"
#include "bus/nats_bus.h"
#include "bus/testing/nats_server.h"

namespace parley::bus {
namespace {

using namespace std::chrono_literals;

// Collects deliveries; waits for a count.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<BusMessage> got;

  Handler handler() {
    return [this](const BusMessage& m) {
      std::lock_guard lock(mu);
      got.push_back(m);
      cv.notify_all();
    };
  }
  bool waitFor(std::size_t n, std::chrono::milliseconds d = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, d, [&] { return got.size() >= n; });
  }
  std::vector<BusMessage> snapshot() {
    std::lock_guard lock(mu);
    return got;
  }
};

Status publishAndWait(Bus& bus, std::string subject, std::string data) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Status> result;
  bus.publish(std::move(subject), std::move(data), [&](Status s) {
    std::lock_guard lock(mu);
    result = std::move(s);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait_for(lock, 10s, [&] { return result.has_value(); });
  if (!result) return std::unexpected(Error{ErrorCode::kTimeout, "publish not acknowledged"});
  return *result;
}

// Sends a request and waits for its outcome.
Result<std::string> requestAndWait(Bus& bus, std::string subject, std::string data,
                                   std::chrono::milliseconds timeout = 2s) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<std::string>> result;
  bus.request(std::move(subject), std::move(data), timeout, [&](Result<std::string> r) {
    std::lock_guard lock(mu);
    result = std::move(r);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait_for(lock, timeout + 5s, [&] { return result.has_value(); });
  if (!result) return std::unexpected(Error{ErrorCode::kInternal, "done was never called"});
  return *result;
}

// Answers "<data>!" on `subject`, later, from another thread (as an engine completion does).
Responder echoLater() {
  return [](const BusMessage& m, Reply reply) {
    std::thread([data = m.data, reply = std::move(reply)] { reply(data + "!"); }).detach();
  };
}

TEST(Subjects, MatchTokensAndWildcards) {
  EXPECT_TRUE(subjectMatches("parley.inval", "parley.inval"));
  EXPECT_FALSE(subjectMatches("parley.inval", "parley.inval.x"));
  EXPECT_TRUE(subjectMatches("parley.conv.>", "parley.conv.a.b"));
  EXPECT_FALSE(subjectMatches("parley.conv.>", "parley.conv"));
  EXPECT_TRUE(subjectMatches("parley.*.a", "parley.conv.a"));
  EXPECT_FALSE(subjectMatches("parley.*.a", "parley.conv.b"));
  EXPECT_FALSE(subjectMatches("parley.conv", "parley.convx"));
  EXPECT_EQ(subjectToken("a.b c>*"), "a_b_c__");
  EXPECT_EQ(subjectToken(""), "_");
  EXPECT_EQ(subjectToken("Acc_1-2"), "Acc_1-2");
}

TEST(LocalBus, DeliversToMatchingSubscribersWithAGrowingSequencePerSubject) {
  auto bus = makeLocalBus();
  EXPECT_FALSE(bus->shared());
  Inbox all, one;
  auto s1 = bus->subscribe("parley.>", all.handler());
  auto s2 = bus->subscribe("parley.x", one.handler());
  ASSERT_TRUE(s1 && s2);
  ASSERT_TRUE(publishAndWait(*bus, "parley.x", "1"));
  ASSERT_TRUE(publishAndWait(*bus, "parley.y", "2"));
  ASSERT_TRUE(publishAndWait(*bus, "parley.x", "3"));
  auto a = all.snapshot();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].data, "1");
  EXPECT_EQ(a[0].sequence, 1u);
  EXPECT_EQ(a[1].subject, "parley.y");
  EXPECT_EQ(a[1].sequence, 1u);
  EXPECT_EQ(a[2].sequence, 2u);
  auto o = one.snapshot();
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[1].data, "3");
  // A dropped subscription gets nothing more.
  s2->reset();
  ASSERT_TRUE(publishAndWait(*bus, "parley.x", "4"));
  EXPECT_EQ(one.snapshot().size(), 2u);
  EXPECT_EQ(all.snapshot().size(), 4u);
}

TEST(LocalBus, RequestsReachTheirResponderAndGetItsAnswer) {
  auto bus = makeLocalBus();
  auto served = bus->serve("rpc.a", echoLater());
  ASSERT_TRUE(served);
  auto r = requestAndWait(*bus, "rpc.a", "hello");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "hello!");
  auto none = requestAndWait(*bus, "rpc.b", "hello");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kUnavailable);
  // A responder that drops the reply: the requester gets Timeout, once.
  auto dropper = bus->serve("rpc.c", [](const BusMessage&, Reply) {});
  ASSERT_TRUE(dropper);
  auto dropped = requestAndWait(*bus, "rpc.c", "x");
  ASSERT_FALSE(dropped);
  EXPECT_EQ(dropped.error().code, ErrorCode::kTimeout);
  served->reset();
  auto gone = requestAndWait(*bus, "rpc.a", "hello");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kUnavailable);
}

TEST(LocalBus, ABroadcastReachesItsListenersNotTheSubscribers) {
  auto bus = makeLocalBus();
  Inbox heard, subscribed;
  auto l = bus->listen("parley-agents", heard.handler());
  auto s = bus->subscribe("parley-agents", subscribed.handler());
  ASSERT_TRUE(l && s);
  ASSERT_TRUE(bus->broadcast("parley-agents", "x"));
  auto got = heard.snapshot();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "x");
  EXPECT_EQ(got[0].sequence, 0u);
  EXPECT_TRUE(subscribed.snapshot().empty());
  l->reset();
  ASSERT_TRUE(bus->broadcast("parley-agents", "y"));
  EXPECT_EQ(heard.snapshot().size(), 1u);
}

TEST(NatsUrl, OnlyNatsHostPort) {
  EXPECT_TRUE(checkNatsUrl("nats://127.0.0.1:4222"));
  EXPECT_TRUE(checkNatsUrl("nats://nats.example:4222"));
  EXPECT_FALSE(checkNatsUrl("http://127.0.0.1:4222"));
  EXPECT_FALSE(checkNatsUrl("127.0.0.1:4222"));
  EXPECT_FALSE(checkNatsUrl("nats://:4222"));
  EXPECT_FALSE(checkNatsUrl("nats://h:0"));
  EXPECT_FALSE(checkNatsUrl("nats://h:4222/path"));
}

testing::NatsServer& server() {
  static testing::NatsServer s;
  return s;
}

TEST(Nats, UnreachableServerIsUnavailable) {
  NatsOptions o;
  o.connect_timeout = 500ms;
  auto bus = connectNatsBus("nats://127.0.0.1:1", o);
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code, ErrorCode::kUnavailable);
}

TEST(Nats, TwoConnectionsSeeEachOthersMessagesInOrderOnce) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto a = connectNatsBus(server().url());
  auto b = connectNatsBus(server().url());  // another node: the stream exists already
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_TRUE((*a)->shared());
  Inbox on_b, on_a;
  auto sb = (*b)->subscribe("parley.t1.>", on_b.handler());
  auto sa = (*a)->subscribe("parley.t1.conv", on_a.handler());
  ASSERT_TRUE(sb && sa) << (sb ? sa.error().message : sb.error().message);
  constexpr int kN = 200;
  for (int i = 0; i < kN - 1; ++i) (*a)->publish("parley.t1.conv", std::to_string(i));
  ASSERT_TRUE(publishAndWait(**a, "parley.t1.conv", std::to_string(kN - 1)));
  ASSERT_TRUE(on_b.waitFor(kN));
  ASSERT_TRUE(on_a.waitFor(kN));
  std::this_thread::sleep_for(200ms);  // nothing more arrives
  auto got = on_b.snapshot();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kN));
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(got[i].data, std::to_string(i));
    EXPECT_EQ(got[i].subject, "parley.t1.conv");
    if (i > 0) {
      EXPECT_GT(got[i].sequence, got[i - 1].sequence);
    }
  }
  EXPECT_EQ(on_a.snapshot().size(), static_cast<std::size_t>(kN));
}

TEST(Nats, SubscriptionSeesOnlyNewMessagesAndNothingAfterItIsDropped) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto a = connectNatsBus(server().url());
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(publishAndWait(**a, "parley.t2.x", "before"));
  Inbox in;
  auto s = (*a)->subscribe("parley.t2.>", in.handler());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(publishAndWait(**a, "parley.t2.x", "after"));
  ASSERT_TRUE(in.waitFor(1));
  s->reset();
  ASSERT_TRUE(publishAndWait(**a, "parley.t2.x", "dropped"));
  std::this_thread::sleep_for(300ms);
  auto got = in.snapshot();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "after");
}

TEST(Nats, ASubscriberGetsWhatWasPublishedWhileTheServerRestarted) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto pub = connectNatsBus(server().url());
  auto sub = connectNatsBus(server().url());
  ASSERT_TRUE(pub && sub);
  Inbox in;
  auto s = (*sub)->subscribe("parley.t3.>", in.handler());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(publishAndWait(**pub, "parley.t3.x", "1"));
  ASSERT_TRUE(in.waitFor(1));
  EXPECT_TRUE((*pub)->connected());
  server().stop();
  // connected() says the server is gone (a closed connection is seen at once) ...
  for (int i = 0; i < 200 && (*pub)->connected(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_FALSE((*pub)->connected());
  server().start();
  ASSERT_TRUE(server().ok()) << server().error();
  // ... and that it is back once nats.c reconnected.
  for (int i = 0; i < 200 && !(*pub)->connected(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_TRUE((*pub)->connected());
  // The publisher reconnects and the message is stored; the subscriber's ordered consumer is
  // re-created after its last sequence and gets it.
  Status st = std::unexpected(Error{});
  for (int i = 0; i < 40 && !st; ++i) {
    st = publishAndWait(**pub, "parley.t3.x", "2");
    if (!st) std::this_thread::sleep_for(250ms);
  }
  ASSERT_TRUE(st) << st.error().message;
  ASSERT_TRUE(in.waitFor(2, 20s));
  auto got = in.snapshot();
  EXPECT_EQ(got[1].data, "2");
  EXPECT_GT(got[1].sequence, got[0].sequence);
}

TEST(Nats, ARequestGetsTheAnswerOfTheNodeServingItsSubject) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto a = connectNatsBus(server().url());
  auto b = connectNatsBus(server().url());
  ASSERT_TRUE(a && b);
  auto served = (*b)->serve("parley-rpc.node-b", echoLater());
  ASSERT_TRUE(served) << served.error().message;
  std::this_thread::sleep_for(100ms);  // the subscription reached the server
  for (int i = 0; i < 20; ++i) {
    auto r = requestAndWait(**a, "parley-rpc.node-b", "m" + std::to_string(i));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, "m" + std::to_string(i) + "!");
  }
  // Nobody serves the subject: Unavailable at once, long before the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  auto none = requestAndWait(**a, "parley-rpc.node-c", "x", 5s);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kUnavailable) << none.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  // A responder that never answers: Timeout.
  auto silent = (*b)->serve("parley-rpc.silent", [](const BusMessage&, Reply) {});
  ASSERT_TRUE(silent);
  std::this_thread::sleep_for(100ms);
  auto late = requestAndWait(**a, "parley-rpc.silent", "x", 300ms);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kTimeout);
  // Request subjects under the stream's are refused (the stream would store and acknowledge
  // them instead of the responder answering).
  auto stream = requestAndWait(**a, "parley.conv.x", "x");
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().code, ErrorCode::kInvalid);
  EXPECT_FALSE((*b)->serve("parley.fwd", echoLater()));
}

TEST(Nats, ABroadcastReachesTheOtherConnectionsListenersAndIsNotStored) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto a = connectNatsBus(server().url());
  auto b = connectNatsBus(server().url());
  ASSERT_TRUE(a && b);
  Inbox on_b;
  auto heard = (*b)->listen("parley-agents-t", on_b.handler());
  ASSERT_TRUE(heard) << heard.error().message;
  std::this_thread::sleep_for(100ms);  // the subscription reached the server
  ASSERT_TRUE((*a)->broadcast("parley-agents-t", "1"));
  ASSERT_TRUE(on_b.waitFor(1));
  EXPECT_EQ(on_b.snapshot()[0].data, "1");
  EXPECT_EQ(on_b.snapshot()[0].sequence, 0u);
  // A listener that starts afterwards gets nothing of it: it was not stored.
  Inbox later;
  auto late = (*b)->listen("parley-agents-t", later.handler());
  ASSERT_TRUE(late);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(later.snapshot().empty());
  // Subjects under the stream's are refused.
  auto stream = (*a)->broadcast("parley.agents", "x");
  ASSERT_FALSE(stream);
  EXPECT_EQ(stream.error().code, ErrorCode::kInvalid);
}

TEST(Nats, RequestsWaitingForAnswersAreBounded) {
  ASSERT_TRUE(server().ok()) << server().error();
  NatsOptions o;
  o.max_requests = 2;
  auto a = connectNatsBus(server().url(), o);
  auto b = connectNatsBus(server().url());
  ASSERT_TRUE(a && b);
  auto silent = (*b)->serve("parley-rpc.bounded", [](const BusMessage&, Reply) {});
  ASSERT_TRUE(silent);
  std::this_thread::sleep_for(100ms);
  std::atomic<int> timeouts = 0;
  for (int i = 0; i < 2; ++i)
    (*a)->request("parley-rpc.bounded", "x", 1s, [&](Result<std::string> r) {
      if (!r && r.error().code == ErrorCode::kTimeout) ++timeouts;
    });
  auto third = requestAndWait(**a, "parley-rpc.bounded", "x", 1s);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(third.error().message.find("too many"), std::string::npos);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(timeouts.load(), 2);
}

TEST(LocalBus, InvalidationsStayInTheProcess) {
  auto bus = makeLocalBus();
  Inbox raw;
  auto s = bus->subscribe(">", raw.handler());
  ASSERT_TRUE(s);
  Invalidations inv(*bus);
  int called = 0;
  inv.on("function", [&](const Invalidation&) { ++called; });
  ASSERT_TRUE(inv.start());
  inv.publish({"function", AccountId("a"), "f"});
  EXPECT_EQ(raw.snapshot().size(), 0u);  // nothing is published: nobody else to tell
  EXPECT_EQ(called, 0);
}

TEST(Nats, InvalidationsReachTheOtherNodesNotTheirOrigin) {
  ASSERT_TRUE(server().ok()) << server().error();
  auto a = connectNatsBus(server().url());
  auto b = connectNatsBus(server().url());
  ASSERT_TRUE(a && b);
  Invalidations on_a(**a), on_b(**b);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> got_a, got_b;
  auto record = [&](std::vector<std::string>& into) {
    return [&](const Invalidation& i) {
      std::lock_guard lock(mu);
      into.push_back(i.kind + " " + i.account.str() + " " + i.id);
      cv.notify_all();
    };
  };
  on_a.on("function", record(got_a));
  on_b.on("function", record(got_b));
  on_b.on("skills", record(got_b));
  ASSERT_TRUE(on_a.start());
  ASSERT_TRUE(on_b.start());
  // Unreadable data and unknown kinds are dropped, the rest is delivered in order.
  (*a)->publish(Invalidations::kSubject, "not json");
  on_a.publish({"bot", AccountId("acc"), "b1"});
  on_a.publish({"function", AccountId("acc"), "f1"});
  on_a.publish({"skills", AccountId("acc"), ""});
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return got_b.size() >= 2; }));
  lock.unlock();
  std::this_thread::sleep_for(200ms);
  lock.lock();
  EXPECT_EQ(got_b, (std::vector<std::string>{"function acc f1", "skills acc "}));
  EXPECT_TRUE(got_a.empty());  // a's own changes are not applied twice
}

// The threads of this process now.
std::size_t threadsNow() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// Each of `n` inboxes, one per subject, got exactly `per` messages "0".."per-1", in that order.
void expectEachInOrderOnce(std::vector<Inbox>& inboxes, int per) {
  for (std::size_t i = 0; i < inboxes.size(); ++i) {
    auto got = inboxes[i].snapshot();
    ASSERT_EQ(got.size(), static_cast<std::size_t>(per)) << "subject " << i;
    for (int k = 0; k < per; ++k) EXPECT_EQ(got[k].data, std::to_string(k)) << "subject " << i;
  }
}

TEST(Nats, SharedListenersAddNoThreadEachAndKeepEachSubjectsOrder) {
  ASSERT_TRUE(server().ok()) << server().error();
  NatsOptions o;
  o.shared_delivery_threads = 4;
  auto a = connectNatsBus(server().url(), o);
  auto b = connectNatsBus(server().url(), o);
  ASSERT_TRUE(a && b);
  // 500 listeners, as a node watching 500 consumers' conversations holds: they add at most the
  // shared delivery threads (which may not all have been started yet), not one each.
  constexpr int kSubjects = 500, kPer = 10;
  std::vector<Inbox> inboxes(kSubjects);
  std::vector<std::unique_ptr<Subscription>> subs;
  const std::size_t before = threadsNow();
  for (int i = 0; i < kSubjects; ++i) {
    auto s = (*b)->listen("parley-conv-t.acc.c" + std::to_string(i) + ".*", inboxes[i].handler(),
                          Delivery::kShared);
    ASSERT_TRUE(s) << s.error().message;
    subs.push_back(std::move(*s));
  }
  const std::size_t after = threadsNow();
  EXPECT_LE(after, before + 4) << before << " threads before, " << after << " after";
  // Interleaved over the subjects: each subscription still gets its own subject's messages once,
  // in the order they were sent.
  for (int k = 0; k < kPer; ++k)
    for (int i = 0; i < kSubjects; ++i)
      ASSERT_TRUE(
          (*a)->broadcast("parley-conv-t.acc.c" + std::to_string(i) + ".conv", std::to_string(k)));
  for (auto& in : inboxes) ASSERT_TRUE(in.waitFor(kPer, 10s));
  std::this_thread::sleep_for(200ms);  // nothing more arrives
  expectEachInOrderOnce(inboxes, kPer);
  // Dropped, they get nothing more.
  subs.clear();
  ASSERT_TRUE((*a)->broadcast("parley-conv-t.acc.c0.conv", "late"));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(inboxes[0].snapshot().size(), static_cast<std::size_t>(kPer));
}

TEST(Nats, AHandlerThatTakesItsTimeHoldsUpOnlyItsOwnSubscription) {
  ASSERT_TRUE(server().ok()) << server().error();
  NatsOptions o;
  o.shared_delivery_threads = 1;  // (the process's pool keeps the largest size asked for)
  auto a = connectNatsBus(server().url(), o);
  auto b = connectNatsBus(server().url(), o);
  ASSERT_TRUE(a && b);
  // A listener of its own thread whose handler waits (as one reading a store that is down).
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  Inbox slow_in;
  auto slow = (*b)->listen("parley-slow-t", [&](const BusMessage& m) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return release; });
    }
    slow_in.handler()(m);
  });
  ASSERT_TRUE(slow) << slow.error().message;
  auto releaseSlow = [&] {
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
  };
  // Released however the test ends (its subscription's destructor waits for the handler).
  std::shared_ptr<void> released(nullptr, [&](void*) { releaseSlow(); });
  ASSERT_TRUE((*a)->broadcast("parley-slow-t", "0"));
  std::this_thread::sleep_for(100ms);  // its handler is waiting now
  // Meanwhile: shared listeners, another listener, the stream's subscribers, served requests
  // and their answers all go on.
  std::vector<Inbox> shared(20);
  std::vector<std::unique_ptr<Subscription>> subs;
  for (int i = 0; i < 20; ++i) {
    auto s =
        (*b)->listen("parley-fast-t." + std::to_string(i), shared[i].handler(), Delivery::kShared);
    ASSERT_TRUE(s);
    subs.push_back(std::move(*s));
  }
  Inbox other_in, stream_in;
  auto served = (*b)->serve("parley-rpc.slow-t", echoLater());
  auto stream = (*b)->subscribe("parley.t9.>", stream_in.handler());
  // (listen() confirms b's subscriptions made before it with the server)
  auto other = (*b)->listen("parley-other-t", other_in.handler());
  ASSERT_TRUE(other && stream && served);
  for (int k = 0; k < 5; ++k) {
    for (int i = 0; i < 20; ++i)
      ASSERT_TRUE((*a)->broadcast("parley-fast-t." + std::to_string(i), std::to_string(k)));
    ASSERT_TRUE((*a)->broadcast("parley-slow-t", std::to_string(k + 1)));
  }
  ASSERT_TRUE((*a)->broadcast("parley-other-t", "x"));
  ASSERT_TRUE(publishAndWait(**a, "parley.t9.x", "s"));
  for (auto& in : shared) ASSERT_TRUE(in.waitFor(5));
  EXPECT_TRUE(other_in.waitFor(1));
  EXPECT_TRUE(stream_in.waitFor(1));
  auto answer = requestAndWait(**a, "parley-rpc.slow-t", "q");
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_EQ(*answer, "q!");
  auto asked = requestAndWait(**b, "parley-rpc.none-t", "q");  // b's own answers too
  ASSERT_FALSE(asked);
  EXPECT_EQ(asked.error().code, ErrorCode::kUnavailable);
  expectEachInOrderOnce(shared, 5);
  EXPECT_TRUE(slow_in.snapshot().empty());  // still waiting
  releaseSlow();
  ASSERT_TRUE(slow_in.waitFor(6));
  auto got = slow_in.snapshot();
  for (int k = 0; k < 6; ++k) EXPECT_EQ(got[k].data, std::to_string(k));
}

}  // namespace
}  // namespace parley::bus
