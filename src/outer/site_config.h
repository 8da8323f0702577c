// Everything `longhaul site` reads from its TOML file (configs/site-a.toml documents every
// key with its default and unit). The model architecture is NOT here: the coordinator is its
// one source of truth and sends it when the site joins.
//   [site]  id, coordinator, server_name, connect_timeout_s, reconnect_max_s,
//           follower_ready_timeout_s
//   [tls]   ca_cert, cert, key
//   [data]  this site's corpus and shard (inner::read_data_config)
//   [optim] inner AdamW (inner::read_optim_config)
//   [train] batch_size, grad_accum, seed, device, threads, steps (lr schedule horizon), ...
//   [link]  emulate_mbps, emulate_rtt_ms: WAN emulation, a testing and benchmarking aid
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "inner/train_config.h"
#include "transport/tls_context.h"

namespace longhaul::transport {
struct ClientOptions;
}

namespace longhaul::outer {

// [link]: makes this site's one connection behave like a slower, longer WAN link, in both
// directions, entirely inside the site process (the coordinator is unchanged). A testing and
// benchmarking aid (scripts/bench-wan), not a traffic shaper for production: it adds to what the
// real link costs, and the coordinator sees its downloads leave at the real link's speed (the
// site delays their delivery; ClientOptions::receive_*).
struct LinkEmulation {
  double emulate_mbps = 0;     // megabits/s (10^6 bit/s) each direction, 0 = off; [0.01, 10^6]
  int64_t emulate_rtt_ms = 0;  // round-trip time added, ms, 0 = off; [0, 60000]
  bool enabled() const { return emulate_mbps > 0 || emulate_rtt_ms > 0; }
  uint64_t bytes_per_s() const;                 // emulate_mbps · 125000, rounded; 0 = off
  std::chrono::milliseconds uplink_latency() const;    // floor(rtt / 2): site -> coordinator
  std::chrono::milliseconds downlink_latency() const;  // rtt - floor(rtt / 2): coordinator -> site
  // Sets the send pacing/latency and the receive emulation of `o` (both directions).
  void apply(transport::ClientOptions& o) const;
};

struct SiteConfig {
  std::string id;                 // site id; must equal the CN of tls.cert
  std::string coordinator_url = "wss://127.0.0.1:7443/v1/ws";
  std::string server_name;        // TLS name to verify; empty = host of coordinator_url
  double connect_timeout_s = 10;  // one connection attempt (TCP + TLS + WebSocket + hello)
  double reconnect_max_s = 30;    // cap of the exponential reconnect backoff
  // A multi-process site's first round: how long rank 0 waits for the other ranks to load
  // their corpus and build the model (outer/site_follower.h), seconds.
  double follower_ready_timeout_s = 600;
  transport::TlsFiles tls;
  inner::TrainConfig train;       // .model is replaced by the coordinator's on join
  LinkEmulation link;             // [link]; off by default
  std::string effective_toml;
};

SiteConfig read_site_config(const std::filesystem::path& path,
                            const std::vector<std::string>& overrides);

}  // namespace longhaul::outer
