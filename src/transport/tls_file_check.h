// Start-up checks of the TLS files a coordinator or site needs, run before it writes any state
// (a failed start leaves no checkpoint or metrics behind). Each file must be present, a regular
// file, readable and parseable; the certificate must be within its validity period and chain to
// the CA file; the key must match the certificate and, as ssh insists, must not be readable or
// writable by group or others. Errors name the config file, the key and the path, e.g.
//   configs/site-a.toml: key 'tls.key' = 'certs/site-a.key': readable by group or others
//   (mode 0644); run: chmod 600 certs/site-a.key
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "transport/tls_context.h"

namespace longhaul::transport {

// Throws UserError on the first problem found.
void check_tls_files(const TlsFiles& files, const std::filesystem::path& config_file);

// The host names and IP addresses a certificate serves (DNS and IP SANs without prefixes; the
// DNS SAN equal to the CN, which `certs issue` always adds, is left out).
std::vector<std::string> certificate_hosts(const std::filesystem::path& cert);

// A warning when `bind` accepts only connections from this machine (127.0.0.0/8, ::1,
// "localhost") while the certificate names other hosts that sites elsewhere would dial; empty
// when there is nothing to say.
std::string loopback_bind_warning(const std::string& bind, const std::filesystem::path& cert);

}  // namespace longhaul::transport
