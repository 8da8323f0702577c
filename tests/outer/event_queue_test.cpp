// The coordinator's event queue: a per-connection cap on queued messages (a flooding peer is
// refused, others are not), open/close events always pass, and the shares free as events are
// taken.
#include <gtest/gtest.h>

#include <array>

#include "outer/event_queue.h"

namespace longhaul::outer {
namespace {

transport::Message msg(std::size_t bytes) {
  transport::Message m;
  m.type = "upload";
  m.payload.resize(bytes);
  return m;
}

TEST(EventQueue, CapsEachConnectionsShare) {
  EventQueue q(2, 1000);
  // The queue only uses a connection's address as its key: aliasing shared_ptrs to two distinct
  // addresses stand in (never dereferenced).
  auto tags = std::make_shared<std::array<int, 2>>();
  std::shared_ptr<transport::Connection> a(tags, reinterpret_cast<transport::Connection*>(&(*tags)[0]));
  std::shared_ptr<transport::Connection> b(tags, reinterpret_cast<transport::Connection*>(&(*tags)[1]));
  EXPECT_TRUE(q.push({ChannelEvent::kMessage, a, msg(10), {}}));
  EXPECT_TRUE(q.push({ChannelEvent::kMessage, a, msg(10), {}}));
  EXPECT_FALSE(q.push({ChannelEvent::kMessage, a, msg(10), {}})) << "third message over the cap of 2";
  EXPECT_TRUE(q.push({ChannelEvent::kMessage, b, msg(10), {}})) << "another connection is not affected";
  EXPECT_TRUE(q.push({ChannelEvent::kClose, a, {}, "bye"})) << "close events always pass";
  auto got = q.pop_all(std::chrono::milliseconds(0));
  EXPECT_EQ(got.size(), 4u);
  EXPECT_TRUE(q.push({ChannelEvent::kMessage, a, msg(10), {}})) << "taken events free the share";
  EXPECT_FALSE(q.push({ChannelEvent::kMessage, a, msg(995), {}})) << "over the byte cap";
  EXPECT_EQ(q.pop_all(std::chrono::milliseconds(0)).size(), 1u);
  EXPECT_TRUE(q.pop_all(std::chrono::milliseconds(10)).empty());
}

}  // namespace
}  // namespace longhaul::outer
