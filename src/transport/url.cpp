#include "transport/url.h"

#include "common/error.h"

namespace longhaul::transport {

Url parse_url(const std::string& url, const std::string& expected_scheme) {
  Url u;
  const auto sep = url.find("://");
  if (sep == std::string::npos) throw UserError("URL '" + url + "' lacks a scheme (expected " + expected_scheme + "://)");
  u.scheme = url.substr(0, sep);
  if (u.scheme != expected_scheme)
    throw UserError("URL '" + url + "' has scheme '" + u.scheme + "', expected '" + expected_scheme + "'");
  std::string rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  u.path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string hostport = rest.substr(0, slash);
  if (!hostport.empty() && hostport[0] == '[') {
    const auto close = hostport.find(']');
    if (close == std::string::npos) throw UserError("URL '" + url + "': unterminated '[' in host");
    u.host = hostport.substr(1, close - 1);
    const std::string after = hostport.substr(close + 1);
    u.port = after.empty() ? "443" : (after[0] == ':' ? after.substr(1) : "");
  } else {
    const auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    u.port = colon == std::string::npos ? "443" : hostport.substr(colon + 1);
  }
  if (u.host.empty()) throw UserError("URL '" + url + "' has no host");
  if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos || std::stoul(u.port) > 65535)
    throw UserError("URL '" + url + "' has a bad port");
  return u;
}

}  // namespace longhaul::transport
