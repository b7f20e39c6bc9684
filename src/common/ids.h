#pragma once

#include <compare>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace parley {

// A string id with a type tag so that an AccountId cannot be passed where a UserId is expected.
template <class Tag>
class StrongId {
 public:
  StrongId() = default;
  explicit StrongId(std::string v) : value_(std::move(v)) {}
  const std::string& str() const { return value_; }
  bool empty() const { return value_.empty(); }
  auto operator<=>(const StrongId&) const = default;

 private:
  std::string value_;
};

// LivePerson-style account id, e.g. "12345678".
using AccountId = StrongId<struct AccountTag>;
// Numeric user id within an account, e.g. "4000001"; the old-style agent id is "{acc}.{userId}".
using UserId = StrongId<struct UserTag>;
// Numeric skill id within an account, e.g. "17"; "-1" means unassigned.
using SkillId = StrongId<struct SkillTag>;
// UUID of a conversation (equals its MAIN dialog id).
using ConversationId = StrongId<struct ConversationTag>;
// Consumer id (the `sub` of the consumer JWT), a UUID.
using ConsumerId = StrongId<struct ConsumerTag>;
// UUID of a function (lambda).
using FunctionId = StrongId<struct FunctionTag>;
// Id of a bot configuration.
using BotId = StrongId<struct BotTag>;

}  // namespace parley

template <class Tag>
struct std::hash<parley::StrongId<Tag>> {
  size_t operator()(const parley::StrongId<Tag>& id) const noexcept {
    return std::hash<std::string>{}(id.str());
  }
};
