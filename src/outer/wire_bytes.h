// Bytes of a codec payload before the lossless stage: what the payload would weigh with
// zstd off (header, chunk table, checksums and every chunk's raw bytes). With the payload's
// own size it gives the zstd saving per message, for the coordinator's metrics
// (bytes_up_raw / bytes_up, bytes_down_raw / bytes_down).
#pragma once

#include <cstdint>

#include "transport/codec.h"

namespace longhaul::outer {

// From an inspect()ed (validated) payload; equals info.payload_bytes when no chunk is
// compressed.
uint64_t raw_payload_bytes(const transport::PayloadInfo& info);

}  // namespace longhaul::outer
