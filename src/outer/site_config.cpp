#include "outer/site_config.h"

#include <cmath>

#include "common/config_reader.h"
#include "common/error.h"
#include "transport/channel_client.h"

namespace longhaul::outer {

uint64_t LinkEmulation::bytes_per_s() const {
  return static_cast<uint64_t>(std::llround(emulate_mbps * 125000.0));
}
std::chrono::milliseconds LinkEmulation::uplink_latency() const {
  return std::chrono::milliseconds(emulate_rtt_ms / 2);
}
std::chrono::milliseconds LinkEmulation::downlink_latency() const {
  return std::chrono::milliseconds(emulate_rtt_ms - emulate_rtt_ms / 2);
}

void LinkEmulation::apply(transport::ClientOptions& o) const {
  o.rate_limit_bytes_per_s = bytes_per_s();
  o.added_latency = uplink_latency();
  o.receive_rate_limit_bytes_per_s = bytes_per_s();
  o.receive_added_latency = downlink_latency();
}

SiteConfig read_site_config(const std::filesystem::path& path,
                            const std::vector<std::string>& overrides) {
  ConfigReader r = ConfigReader::from_file(path, overrides);
  SiteConfig c;
  c.id = r.get_string("site.id", "");
  if (c.id.empty()) r.fail("site.id", "a non-empty site id (the CN of its certificate)");
  c.coordinator_url = r.get_string("site.coordinator", c.coordinator_url);
  if (c.coordinator_url.rfind("wss://", 0) != 0)
    r.fail("site.coordinator", "a wss://host:port/path URL");
  c.server_name = r.get_string("site.server_name", "");
  c.connect_timeout_s = r.get_positive("site.connect_timeout_s", c.connect_timeout_s, 3600);
  c.reconnect_max_s = r.get_positive("site.reconnect_max_s", c.reconnect_max_s, 3600);
  c.follower_ready_timeout_s =
      r.get_positive("site.follower_ready_timeout_s", c.follower_ready_timeout_s, 86400);
  // Defaults: the directory `longhaul certs issue --name <id>` writes (docs/deployment.md),
  // next to this config file like every relative path in it.
  const std::filesystem::path certs = path.parent_path() / "certs" / c.id;
  c.tls.ca_cert = r.get_path("tls.ca_cert", certs / "ca.crt");
  c.tls.cert = r.get_path("tls.cert", certs / (c.id + ".crt"));
  c.tls.key = r.get_path("tls.key", certs / (c.id + ".key"));
  // The model comes from the coordinator; corpus checks that need it are redone on join.
  inner::GptConfig placeholder;
  c.train.model = placeholder;
  c.train.data = inner::read_data_config(r, placeholder);
  c.train.train = inner::read_loop_config(r);
  c.train.optim = inner::read_optim_config(r, c.train.train.steps);
  c.link.emulate_mbps = r.get_double("link.emulate_mbps", 0, 0, 1e6);
  if (c.link.emulate_mbps > 0 && c.link.emulate_mbps < 0.01)
    r.fail("link.emulate_mbps", "0 (off) or a rate in [0.01, 1e6] megabits/s");
  c.link.emulate_rtt_ms = r.get_int("link.emulate_rtt_ms", 0, 0, 60000);
  r.finish();
  c.effective_toml = r.effective_toml();
  return c;
}

}  // namespace longhaul::outer
