#include "outer/evil_site_util.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "inner/flat_params.h"
#include "inner/gpt.h"
#include "outer/protocol.h"
#include "transport/channel_server.h"

namespace longhaul::testing {

using json = nlohmann::json;
using transport::Message;
namespace proto = outer::protocol;

Message Evil::expect(const std::string& type, std::chrono::seconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    auto m = client.receive(std::chrono::milliseconds(200));
    if (m && m->type == type) return *m;
    if (m && m->type != transport::kAckType)
      ADD_FAILURE() << "unexpected '" << m->type << "' while waiting for '" << type << "': " << m->header.dump();
  }
  ADD_FAILURE() << "no '" << type << "' within timeout";
  return {};
}

void Evil::upload(int64_t round, transport::Bytes payload, double tokens) {
  Message m{proto::kUpload,
            {{"run_id", run_id}, {"round", round}, {"site", "evil"}, {"fragment", 0}, {"tokens", tokens}, {"steps", 1}},
            std::move(payload)};
  client.send(std::move(m));
}

json Evil::hello(const std::string& site, uint64_t manifest_hash) {
  return {{"site", site},
          {"protocol", proto::kVersion},
          {"manifest_hash", proto::hex64(manifest_hash)},
          {"round", -1},
          {"train", {{"batch_size", 4}, {"grad_accum", 1}}},
          {"data", {{"num_shards", 1}, {"shard_index", 0}, {"val_fraction", 0.1}}}};
}

transport::Manifest cluster_manifest() {
  torch::manual_seed(0);
  inner::GptConfig g;  // the cluster's model config (cluster_util.cpp)
  g.n_layer = 1, g.n_head = 2, g.n_embd = 32, g.block_size = 32, g.vocab_size = 256;
  inner::Gpt model(g);
  return inner::param_manifest(*model);
}

ClusterOptions EvilRun::options(int rounds) {
  ClusterOptions o;
  o.rounds = rounds;
  o.min_sites = 1;
  o.start_sites = 1;
  o.sites = {"evil"};
  o.upload_encoding = "fp32";
  return o;
}

EvilRun::EvilRun(const std::string& name, int rounds, ClusterOptions o)
    : c(name, o.rounds == 0 ? options(rounds) : o) {
  coord = c.start_coordinator();
  if (c.port() <= 0) throw std::runtime_error("coordinator did not start: " + Cluster::tail(coord.log()));
  m = cluster_manifest();
  n = m.total_elements();
  evil = connect();
  evil->client.send(Message{proto::kHello, Evil::hello("evil", m.hash()), {}});
  welcome = evil->expect(proto::kWelcome);
  evil->run_id = welcome.header["run_id"];
  theta.resize(n);
  transport::decode(welcome.payload, theta, m.hash());
}

std::unique_ptr<Evil> EvilRun::connect() const {
  transport::ClientOptions co;
  co.url = "wss://127.0.0.1:" + std::to_string(c.port()) + "/v1/ws";
  co.tls = {c.root() / "certs/ca.crt", c.root() / "certs/evil.crt", c.root() / "certs/evil.key"};
  auto e = std::make_unique<Evil>(co);
  e->client.connect();
  return e;
}

}  // namespace longhaul::testing
