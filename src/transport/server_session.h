// One accepted TCP connection on the server: TLS handshake (with timeout), identity and
// allow-list check, then HTTP requests (keep-alive) until a WebSocket upgrade hands the stream
// to a Connection.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "transport/channel_server.h"

namespace longhaul::transport {

boost::asio::awaitable<void> serve_session(std::shared_ptr<ChannelServer::Impl> impl,
                                           boost::asio::ip::tcp::socket socket);

}  // namespace longhaul::transport
