#pragma once

// Renders a stored conversation as the Messaging Interactions API returns it (the shape that
// Toolbelt.ConversationUtil().getConversationById reads: info, messageRecords with
// messageData.msg.text, HOSTED_FILE records with messageData.file, sentBy, timeL,
// agentParticipants, consumerParticipants, transfers, and the engagement attributes as `sdes`
// (reported by functions with SDEUtil.addSDEs) and `unAuthSdes` (from the consumer's
// conversationContext); see store/engagement_attributes.h).
// Blocking (store reads): for the function runtime's host threads only.

#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::app {

Result<std::string> readConversationForFunctions(store::Store& store, const AccountId& account,
                                                 const std::string& conversation_id);

// The relativePath of each hosted file (a ContentEvent with contentType `hosted/file` and
// `message.relativePath`) among `messages`, in order, without repeats.
std::vector<std::string> hostedFilePaths(const std::vector<store::Message>& messages);

}  // namespace parley::app
