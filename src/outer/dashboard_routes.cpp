#include "outer/dashboard_routes.h"

#include <charconv>

#include "outer/dashboard/dashboard_assets.h"
#include "outer/run_history.h"
#include "transport/channel_server.h"

namespace longhaul::outer {

bool parse_since_round(const std::string& query, long long* since_round) {
  *since_round = -1;
  if (query.empty()) return true;
  static const std::string kKey = "since_round=";
  if (query.compare(0, kKey.size(), kKey) != 0) return false;
  const char* b = query.data() + kKey.size();
  const char* e = query.data() + query.size();
  long long v = 0;
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || b == e || v < -1 || v > (1LL << 62)) return false;
  *since_round = v;
  return true;
}

void add_dashboard_routes(transport::ChannelServer& server, const RunHistory& history) {
  for (size_t i = 0; i < kDashboardAssetCount; ++i) {
    const DashboardAsset a = kDashboardAssets[i];
    server.add_route("GET", std::string(a.path), [a](const transport::HttpRequest&) {
      transport::HttpResponse r;
      r.content_type = std::string(a.content_type);
      r.body = std::string(a.body);
      return r;
    });
  }
  server.add_route("GET", "/v1/history", [&history](const transport::HttpRequest& req) {
    transport::HttpResponse r;
    long long since = -1;
    if (!parse_since_round(req.query, &since)) {
      r.status = 400;
      r.body = "bad query '" + req.query.substr(0, 100) +
               "': expected nothing or since_round=N with N an integer >= -1\n";
      return r;
    }
    r.content_type = "application/json";
    // Warnings may quote peer-supplied text: invalid UTF-8 is replaced, never a 500.
    r.body = history.to_json(since).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return r;
  });
}

}  // namespace longhaul::outer
