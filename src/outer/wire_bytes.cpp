#include "outer/wire_bytes.h"

#include "transport/wire_format.h"

namespace longhaul::outer {

uint64_t raw_payload_bytes(const transport::PayloadInfo& info) {
  namespace wire = transport::wire;
  uint64_t bytes = wire::table_end(info.chunks);
  if (info.chunks == 0 || info.chunk_elements == 0) return bytes;
  const uint64_t full = info.elements / info.chunk_elements;  // chunks of exactly chunk_elements
  const uint64_t tail = info.elements % info.chunk_elements;
  bytes += full * wire::raw_chunk_bytes(info.encoding, info.chunk_elements, info.block_size);
  if (tail) bytes += wire::raw_chunk_bytes(info.encoding, tail, info.block_size);
  return bytes;
}

}  // namespace longhaul::outer
