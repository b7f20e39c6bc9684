#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace parley::log {

void setup(std::string_view level, bool human) {
  auto logger = spdlog::stderr_logger_mt("parley");
  if (human) {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  } else {
    // Messages are expected to be plain text; quotes inside are escaped by callers that log
    // untrusted values with fmt's {:?}-free escaping helpers.
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace parley::log
