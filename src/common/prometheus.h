#pragma once

// Prometheus text exposition of one unlabelled sample with its HELP and TYPE lines.

#include <cstdint>
#include <string>
#include <string_view>

namespace parley::prometheus {

// Appends "# HELP name help\n# TYPE name type\nname value\n" to `out`. `type` is "counter" or
// "gauge".
inline void appendSample(std::string& out, std::string_view name, std::string_view type,
                         std::string_view help, std::int64_t value) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
  out.append(name).append(" ").append(type).append("\n");
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

}  // namespace parley::prometheus
