// Everything `longhaul site` reads from its TOML file (configs/site-a.toml documents every
// key with its default and unit). The model architecture is NOT here: the coordinator is its
// one source of truth and sends it when the site joins.
//   [site]  id, coordinator, server_name, connect_timeout_s, reconnect_max_s,
//           follower_ready_timeout_s
//   [tls]   ca_cert, cert, key
//   [data]  this site's corpus and shard (inner::read_data_config)
//   [optim] inner AdamW (inner::read_optim_config)
//   [train] batch_size, grad_accum, seed, device, threads, steps (lr schedule horizon), ...
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "inner/train_config.h"
#include "transport/tls_context.h"

namespace longhaul::outer {

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
  std::string effective_toml;
};

SiteConfig read_site_config(const std::filesystem::path& path,
                            const std::vector<std::string>& overrides);

}  // namespace longhaul::outer
