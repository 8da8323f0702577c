// Removing test directories. NOT std::filesystem::remove_all: libtorch.so exports its own copy
// of some std::filesystem functions and, when the dynamic linker binds to it, remove_all
// crashes (null call). nftw() is plain libc.
#pragma once

#include <ftw.h>
#include <stdio.h>

#include <filesystem>

namespace longhaul::testing {

inline void remove_tree(const std::filesystem::path& p) {
  ::nftw(
      p.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path) == 0 ? 0 : 0; },
      16, FTW_DEPTH | FTW_PHYS);
}

}  // namespace longhaul::testing
