// Memory footprint of open idle conversations: the bot connector holds up to 100,000 of them,
// and the whole process must stay under 1 GiB. Counts live heap bytes through a replaced
// global operator new (this binary only) and subtracts what the memory store itself holds.

#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <new>

#include "common/random.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_engine.h"
#include "store/memory/memory_store.h"

namespace {
std::atomic<long long> g_live_bytes{0};
}  // namespace

void* operator new(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  g_live_bytes.fetch_add(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept {
  if (!p) return;
  g_live_bytes.fetch_sub(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { operator delete(p); }

namespace parley::conversation {
namespace {

// 20,000 by default (the footprint is linear); PARLEY_MEMORY_TEST_N=100000 runs the full size.
int conversationCount() {
  const char* n = std::getenv("PARLEY_MEMORY_TEST_N");
  return n ? std::atoi(n) : 20'000;
}
const char* kContext = R"({"type":"SharkContext","lang":"en-US","visitorId":"v-123456789"})";

store::Conversation shaped(const std::string& consumer) {
  store::Conversation c;
  c.id = ConversationId(randomUuid());
  c.account = AccountId("1000");
  c.consumer = ConsumerId(consumer);
  c.start_ts = c.updated_at = 1;
  c.participants.push_back(store::Participant{consumer, store::ParticipantRole::kConsumer,
                                              store::ParticipantState::kActive, 1});
  c.context_json = kContext;
  return c;
}

TEST(EngineMemory, OpenIdleConversationsStaySmall) {
  const int kConversations = conversationCount();
  testing::FakeClock clock;
  // What the store alone holds for the same conversations.
  long long store_bytes = 0;
  {
    auto baseline = store::makeMemoryStore(clock);
    long long before = g_live_bytes.load();
    for (int i = 0; i < kConversations; ++i)
      ASSERT_TRUE(baseline->conversations().saveConversation(shaped(randomUuid())));
    store_bytes = g_live_bytes.load() - before;
  }

  auto store = store::makeMemoryStore(clock);
  ASSERT_TRUE(store->accounts().createAccount(store::Account{AccountId("1000"), "acme"}));
  auto engine = makeConversationService(*store, clock, Options{.tick_interval_ms = 0});
  long long before = g_live_bytes.load();
  std::atomic<int> remaining = kConversations;
  std::atomic<int> failures = 0;
  std::promise<void> done;
  for (int i = 0; i < kConversations; ++i) {
    ConversationRequest req;
    req.account = AccountId("1000");
    req.consumer = ConsumerId(randomUuid());
    req.context_json = kContext;
    engine->requestConversation(std::move(req), [&](Result<store::Conversation> r) {
      if (!r) failures++;
      if (--remaining == 0) done.set_value();
    });
    // Keep the backlog of queued requests bounded so that it does not count as state.
    while (i - (kConversations - remaining.load()) > 1000) std::this_thread::yield();
  }
  done.get_future().wait();
  ASSERT_EQ(failures, 0);
  ASSERT_EQ(engine->queues(AccountId("1000"), SkillId("-1"))[0].entries.size(),
            static_cast<size_t>(kConversations));
  long long total = g_live_bytes.load() - before;
  long long engine_bytes = total - store_bytes;
  double per_conv = static_cast<double>(engine_bytes) / kConversations;
  std::printf("%d open conversations: store %.1f MiB, engine %.1f MiB (%.0f B each)\n",
              kConversations, store_bytes / 1048576.0, engine_bytes / 1048576.0, per_conv);
  // 100,000 conversations must fit in 1 GiB with the store; leave most of it to the rest.
  EXPECT_LT(per_conv, 4096.0);
  EXPECT_LT(per_conv * 100'000 + static_cast<double>(store_bytes) / kConversations * 100'000,
            static_cast<double>(1LL << 30) / 2);
}

}  // namespace
}  // namespace parley::conversation
