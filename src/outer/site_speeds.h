// What the coordinator has measured about each site, smoothed over rounds (exponential moving
// averages, weight `alpha` on the newest sample). Inputs of the per-site H_k plan
// (inner_steps_plan.h), of sync.inner_steps = "auto" and of the equal_time round close.
//   steps_per_s   inner steps / compute seconds, as the site reports them with its upload
//   upload_bps    upload payload bytes / seconds from its first to its last byte at the coordinator
//   download_bps  round-result payload bytes / seconds, as the site reports them (download_s)
//   overhead_s    seconds from round open to the upload's arrival, minus the compute seconds:
//                 download, evaluation, encode and upload time of one round
//   upload_bytes, download_bytes: the last such transfer's size (the next is about the same)
// A sample that cannot be a measurement (non-positive or non-finite) is ignored; a value that
// was never measured reads 0 (bytes per second, steps per second) or -1 (overhead_s).
// Trust: every figure but upload_bps comes from the site's own reports; see docs/operations.md
// ("Sites of different speeds") for what a lying site can and cannot do with them.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace longhaul::outer {

struct SiteSpeed {
  double steps_per_s = 0;
  double upload_bps = 0;
  double download_bps = 0;
  double overhead_s = -1;
  double upload_bytes = 0;
  double download_bytes = 0;
  // Seconds one round's transfers take at the measured rates (0 when a rate is unknown).
  double comm_s() const;
};

class SiteSpeeds {
 public:
  explicit SiteSpeeds(double alpha = 0.5) : alpha_(alpha) {}
  void add_compute(const std::string& site, int64_t steps, double compute_s);
  void add_upload(const std::string& site, double bytes, double seconds);
  void add_download(const std::string& site, double bytes, double seconds);
  void add_overhead(const std::string& site, double seconds);  // >= 0 accepted (0 included)
  // steps_per_s of every site measured so far.
  std::map<std::string, double> step_rates() const;
  const std::map<std::string, SiteSpeed>& all() const { return speeds_; }
  const SiteSpeed* find(const std::string& site) const;

 private:
  double smooth(double old_value, double sample) const;
  double alpha_;  // (0, 1]
  std::map<std::string, SiteSpeed> speeds_;
};

}  // namespace longhaul::outer
