// A hostile site for tests against a real coordinator process: a real TLS client with a
// certificate from the run's CA ("evil"), speaking the protocol by hand so it can send
// anything. EvilRun starts a coordinator whose only site is "evil" (fp32 uploads, min_sites 1)
// and joins it: `theta` holds the θ of its welcome.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "outer/cluster_util.h"
#include "transport/channel_client.h"
#include "transport/codec.h"
#include "transport/manifest.h"

namespace longhaul::testing {

struct Evil {
  transport::ChannelClient client;
  std::string run_id;
  explicit Evil(transport::ClientOptions o) : client(std::move(o)) {}

  // The next message of `type` (acks skipped; anything else is a test failure).
  transport::Message expect(const std::string& type, std::chrono::seconds timeout = std::chrono::seconds(60));
  void upload(int64_t round, transport::Bytes payload, double tokens = 128);
  // The hello an honest site sends (protocol v2: train and data declaration).
  static nlohmann::json hello(const std::string& site, uint64_t manifest_hash);
};

struct EvilRun {
  Cluster c;
  Process coord;
  transport::Manifest m;
  size_t n = 0;
  std::unique_ptr<Evil> evil;
  transport::Message welcome;
  std::vector<float> theta;

  static ClusterOptions options(int rounds);
  EvilRun(const std::string& name, int rounds, ClusterOptions o = options(0));
  // A second client with the evil certificate, connected (not joined).
  std::unique_ptr<Evil> connect() const;
};

// The manifest of the cluster's model (cluster_util.cpp's [model]).
transport::Manifest cluster_manifest();

}  // namespace longhaul::testing
