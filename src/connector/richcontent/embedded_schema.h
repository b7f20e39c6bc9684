#pragma once

// JSON Pollock's schema files (rich_content.json and the files it refers to), compiled into the
// binary at build time from the json-pollock npm package that the console installs
// (web/node_modules/json-pollock/js/schema; see src/connector/CMakeLists.txt).

#include <span>

#include "common/embedded_file.h"

namespace parley::connector::richcontent {

std::span<const EmbeddedFile> embeddedJsonPollockSchema();

}  // namespace parley::connector::richcontent
