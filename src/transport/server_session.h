// One accepted TCP connection on the server: TLS handshake (with timeout), identity and role,
// then HTTP requests (keep-alive), each judged against the allow-lists (HTTP 403 with the reason
// when refused), until a WebSocket upgrade hands the stream to a Connection.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "transport/channel_server_impl.h"

namespace longhaul::transport {

// `slot` is the connection's pending-handshake place, released once its TLS handshake ended.
boost::asio::awaitable<void> serve_session(std::shared_ptr<ChannelServer::Impl> impl,
                                           boost::asio::ip::tcp::socket socket, HandshakeSlot slot);

// One connection on the optional plain-HTTP listener: GET routes only, no identity.
boost::asio::awaitable<void> serve_plain_session(std::shared_ptr<ChannelServer::Impl> impl,
                                                 boost::asio::ip::tcp::socket socket);

}  // namespace longhaul::transport
