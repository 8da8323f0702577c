#include "outer/event_queue.h"

namespace longhaul::outer {

EventQueue::EventQueue(std::size_t max_messages, uint64_t max_bytes)
    : max_messages_(max_messages), max_bytes_(max_bytes) {}

bool EventQueue::push(ChannelEvent e) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (e.kind == ChannelEvent::kMessage) {
      Share& s = shares_[e.conn.get()];
      const uint64_t bytes = transport::payload_size(e.msg);  // in memory or spooled
      if (s.messages >= max_messages_ || (s.messages > 0 && s.bytes + bytes > max_bytes_)) return false;
      ++s.messages;
      s.bytes += bytes;
    }
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
  return true;
}

std::deque<ChannelEvent> EventQueue::pop_all(std::chrono::milliseconds timeout) {
  std::deque<ChannelEvent> out;
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, timeout, [&] { return !events_.empty(); });
  out.swap(events_);
  for (const auto& e : out) {
    if (e.kind != ChannelEvent::kMessage) continue;
    auto it = shares_.find(e.conn.get());
    if (it == shares_.end()) continue;
    --it->second.messages;
    it->second.bytes -= transport::payload_size(e.msg);
    if (it->second.messages == 0) shares_.erase(it);
  }
  return out;
}

void EventQueue::clear() {
  std::lock_guard<std::mutex> l(mu_);
  events_.clear();
  shares_.clear();
}

}  // namespace longhaul::outer
