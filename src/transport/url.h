// Minimal URL parsing for wss:// and https:// endpoints: scheme://host[:port][/path].
// IPv6 hosts in brackets ([::1]:8443). Throws UserError naming the URL when malformed.
#pragma once

#include <string>

namespace longhaul::transport {

struct Url {
  std::string scheme, host, port, path;  // port defaults to 443, path to "/"
};

Url parse_url(const std::string& url, const std::string& expected_scheme);

}  // namespace longhaul::transport
