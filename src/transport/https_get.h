// A one-shot HTTPS GET with mutual TLS (tests, tools, health probes). Verifies the server's
// chain against tls.ca_cert and its host name / IP; presents tls.cert/key when set.
#pragma once

#include <chrono>
#include <string>

#include "transport/http_route_table.h"
#include "transport/tls_context.h"

namespace longhaul::transport {

// Throws ChannelError on connection/TLS/timeout failure; a non-200 status is returned as is.
// The response body is capped at 16 MiB.
HttpResponse https_get(const std::string& url, const TlsFiles& tls, std::chrono::milliseconds timeout);

}  // namespace longhaul::transport
