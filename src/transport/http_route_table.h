// Plain HTTPS routes served on the channel's port beside the WebSocket endpoint
// (/healthz, /metrics, /v1/status, ...). Exact-path match on (method, path); the query string
// is passed through to the handler.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace longhaul::transport {

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as sent: path plus optional "?query"
  std::string path;     // target without the query
  std::string query;    // after '?', may be empty
  std::string body;     // capped at kMaxHttpBodyBytes
  std::string peer_id;  // authenticated client identity (certificate CN)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

inline constexpr std::size_t kMaxHttpBodyBytes = 1 << 20;    // request body cap
inline constexpr std::size_t kMaxHttpHeaderBytes = 16 << 10; // request header cap

class HttpRouteTable {
 public:
  void add(std::string method, std::string path, HttpHandler handler);  // replaces an existing route
  // The response for req: the handler's, 404 for an unknown path, 405 for a wrong method,
  // 500 (logged) when the handler throws.
  HttpResponse dispatch(const HttpRequest& req) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, HttpHandler> routes_;  // (method, path)
};

}  // namespace longhaul::transport
