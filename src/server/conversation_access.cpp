#include "server/conversation_access.h"

#include <algorithm>

namespace parley::server {

bool visibleTo(const store::Conversation& c, const store::User& user,
               const conversation::ConversationService& service) {
  if (c.account != user.account) return false;
  const std::string uid = user.id.str();
  bool assigned = false;
  for (const auto& p : c.participants) {
    if (p.role == store::ParticipantRole::kConsumer) continue;
    if (p.id == uid) return true;
    if (p.role == store::ParticipantRole::kAssignedAgent &&
        p.state == store::ParticipantState::kActive)
      assigned = true;
  }
  for (const auto& ring : service.ringsForAgent(user.account, user.id))
    if (ring.conversation == c.id && ring.state == conversation::RingState::kWaiting) return true;
  return c.state == store::ConversationState::kOpen && !assigned &&
         std::ranges::find(user.skills, c.skill) != user.skills.end();
}

Status authorizeRead(const policy::Subject& who, const store::User& user,
                     const store::Conversation& c,
                     const conversation::ConversationService& service) {
  if (policy::may(who, policy::Action::kReadAnyConversation)) return {};
  if (visibleTo(c, user, service))
    return policy::authorize(who, policy::Action::kReadVisibleConversation);
  return policy::authorize(who, policy::Action::kReadAnyConversation);
}

}  // namespace parley::server
