// The operator's dashboard on the coordinator's HTTPS port: `GET /` (index.html), its assets
// (`/dashboard.js`, `/dashboard.css`; compiled in, see dashboard/) and `GET /v1/history`
// (RunHistory as JSON; `?since_round=N` returns only rounds > N, so the page polls cheaply).
// The page itself polls `/v1/status` and `/v1/history` every few seconds; it needs no
// network beyond the coordinator (no CDN, no external fonts).
#pragma once

#include <string>

namespace longhaul::transport {
class ChannelServer;
}

namespace longhaul::outer {

class RunHistory;

// Registers the routes; `history` must outlive the server.
void add_dashboard_routes(transport::ChannelServer& server, const RunHistory& history);

// Parses the query string of /v1/history: "" -> -1 (every round), "since_round=N" with N in
// [-1, 2^62] -> N. Returns false for anything else (the route answers 400).
bool parse_since_round(const std::string& query, long long* since_round);

}  // namespace longhaul::outer
