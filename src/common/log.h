#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace parley::log {

// Configures the default spdlog logger: structured JSON lines on stderr
// ({"ts":..,"level":..,"msg":..}) unless `human` is set. Call once from main.
void setup(std::string_view level, bool human);

}  // namespace parley::log
