#pragma once

// A file compiled into the binary at build time (cmake/embed.cmake): its name and its bytes.
// The bytes live in static storage for the life of the process.

#include <span>
#include <string_view>

namespace parley {

struct EmbeddedFile {
  std::string_view name;
  std::string_view text;
};

// The file called `name` in `files`, or nullptr.
inline const EmbeddedFile* findEmbeddedFile(std::span<const EmbeddedFile> files,
                                            std::string_view name) {
  for (const EmbeddedFile& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

}  // namespace parley
