#include "transport/http_route_table.h"

#include "common/log.h"

namespace longhaul::transport {

void HttpRouteTable::add(std::string method, std::string path, HttpHandler handler) {
  std::lock_guard lock(mu_);
  routes_[{std::move(method), std::move(path)}] = std::move(handler);
}

HttpResponse HttpRouteTable::dispatch(const HttpRequest& req) const {
  HttpHandler h;
  bool path_known = false;
  {
    std::lock_guard lock(mu_);
    auto it = routes_.find({req.method, req.path});
    if (it != routes_.end()) h = it->second;
    for (const auto& [key, _] : routes_) path_known |= key.second == req.path;
  }
  if (!h) {
    if (path_known) return {405, "text/plain", "method " + req.method + " not allowed on " + req.path + "\n"};
    return {404, "text/plain", "no route " + req.path + "\n"};
  }
  try {
    return h(req);
  } catch (const std::exception& e) {
    LH_LOG(Error, "http") << req.method << " " << req.path << " from '" << req.peer_id << "' failed: " << e.what();
    return {500, "text/plain", "internal error\n"};
  }
}

}  // namespace longhaul::transport
