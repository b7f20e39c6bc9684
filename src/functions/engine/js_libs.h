#pragma once

// The npm libraries a function may `require`, compiled into the binary at build time from
// src/functions/jslib/node_modules (see src/functions/CMakeLists.txt): "lodash" (lodash.js) and
// "luxon" (its CommonJS browser build), by module name.

#include <span>

#include "common/embedded_file.h"

namespace parley::functions::engine {

std::span<const EmbeddedFile> embeddedJsLibs();

}  // namespace parley::functions::engine
