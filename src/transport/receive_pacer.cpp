#include "transport/receive_pacer.h"

#include <algorithm>

namespace longhaul::transport {

ReceivePacer::Clock::time_point ReceivePacer::deliver_at(Clock::time_point arrival,
                                                         uint64_t bytes) {
  tx_done_ = std::max(arrival, tx_done_);
  if (rate_ > 0)
    tx_done_ += std::chrono::ceil<Clock::duration>(  // ceil: never less than bytes/rate
        std::chrono::duration<double>(double(bytes) / double(rate_)));
  return tx_done_ + latency_;
}

}  // namespace longhaul::transport
