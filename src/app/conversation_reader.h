#pragma once

// Renders a stored conversation as the Messaging Interactions API returns it (the shape that
// Toolbelt.ConversationUtil().getConversationById reads: info, messageRecords with
// messageData.msg.text, sentBy, timeL, agentParticipants, consumerParticipants, transfers).
// Blocking (store reads): for the function runtime's host threads only.

#include <string>

#include "common/ids.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::app {

Result<std::string> readConversationForFunctions(store::Store& store, const AccountId& account,
                                                 const std::string& conversation_id);

}  // namespace parley::app
