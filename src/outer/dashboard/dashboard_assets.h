// The dashboard's static files, compiled into the binary (dashboard_assets.cpp is generated
// from src/outer/dashboard/* by embed_assets.cmake at build time).
#pragma once

#include <cstddef>
#include <string_view>

namespace longhaul::outer {

struct DashboardAsset {
  std::string_view path;          // URL path: "/" for index.html, else "/<file name>"
  std::string_view content_type;  // MIME type with charset
  std::string_view body;          // the file's bytes
};

extern const DashboardAsset kDashboardAssets[];
extern const size_t kDashboardAssetCount;

}  // namespace longhaul::outer
