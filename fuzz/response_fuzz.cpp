// The function-response parser of the bot connector (planResponse): an input is the JSON text a
// function gave its callback. It is planned for messaging and for chat. Checks: nothing crashes;
// a fatal plan has no steps and no action; every step's event and every problem is valid JSON.

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "connector/response.h"
#include "fuzz/fuzz_support.h"

namespace cn = parley::connector;
namespace bj = boost::json;

namespace {

void checkPlan(const cn::ResponsePlan& p) {
  if (p.fatal) {
    PARLEY_FUZZ_CHECK(p.steps.empty() && !p.action, "a fatal plan sends nothing");
    (void)bj::serialize(p.fatal->toJson());
  }
  for (const auto& s : p.steps) {
    if (s.kind == cn::StepKind::kDelay) {
      PARLEY_FUZZ_CHECK(s.delay_s >= 0, "a delay is not negative");
      continue;
    }
    PARLEY_FUZZ_CHECK(s.event != nullptr, "a step that is not a delay has an event");
    // What the engine stores: its serialisation reads back as the same object.
    boost::system::error_code ec;
    bj::value ev = bj::parse(bj::serialize(*s.event), ec);
    PARLEY_FUZZ_CHECK(!ec && ev.is_object() && ev.as_object() == *s.event,
                      "a step's event serialises to the same JSON object");
    (void)bj::serialize(s.metadata);
  }
  if (p.action) (void)bj::serialize(p.action->toJson());
  for (const auto& r : p.refused) (void)bj::serialize(r.toJson());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& v = parley::fuzz::validator();
  std::string_view text(reinterpret_cast<const char*>(data), size);

  cn::PlanOptions messaging;
  messaging.conversation_id = "conv-1";
  checkPlan(cn::planResponse(text, v, messaging));

  cn::PlanOptions chat;
  chat.channel = parley::store::Channel::kChat;
  chat.image_allowlist = std::vector<std::string>{"images.example.com"};
  chat.max_delay_s = 5;
  checkPlan(cn::planResponse(text, v, chat));
  return 0;
}
