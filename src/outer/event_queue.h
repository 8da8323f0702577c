// Channel events (connection opened, message, connection closed) handed from the server's I/O
// threads to the coordinator's one state thread, with a cap per connection: a connection
// whose queued messages reach the cap is refused further messages (the caller closes it), so
// no peer can make the coordinator buffer without bound. With the transport's backpressure
// (a connection reads its next message only after the previous one was handled) an honest
// peer never has more than one message queued.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "transport/connection.h"
#include "transport/message.h"

namespace longhaul::outer {

struct ChannelEvent {
  enum Kind { kOpen, kMessage, kClose } kind = kOpen;
  std::shared_ptr<transport::Connection> conn;
  transport::Message msg;
  std::string reason;  // kClose: why
};

class EventQueue {
 public:
  // max_messages / max_bytes: queued messages and payload bytes (in memory or spooled to disk)
  // per connection.
  EventQueue(std::size_t max_messages, uint64_t max_bytes);

  // Thread-safe. Open/close events are always queued; a message over its connection's cap is
  // not, and push returns false.
  bool push(ChannelEvent e);
  // Waits up to `timeout` for an event, then returns every queued event (oldest first).
  std::deque<ChannelEvent> pop_all(std::chrono::milliseconds timeout);
  void clear();

 private:
  struct Share {
    std::size_t messages = 0;
    uint64_t bytes = 0;
  };
  std::size_t max_messages_;
  uint64_t max_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ChannelEvent> events_;
  std::map<const transport::Connection*, Share> shares_;
};

}  // namespace longhaul::outer
