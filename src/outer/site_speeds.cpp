#include "outer/site_speeds.h"

#include <cmath>

namespace longhaul::outer {

namespace {
bool measurement(double v) { return std::isfinite(v) && v > 0; }
}  // namespace

double SiteSpeed::comm_s() const {
  if (!(upload_bps > 0) || !(download_bps > 0)) return 0;
  return upload_bytes / upload_bps + download_bytes / download_bps;
}

double SiteSpeeds::smooth(double old_value, double sample) const {
  return old_value > 0 ? alpha_ * sample + (1 - alpha_) * old_value : sample;
}

void SiteSpeeds::add_compute(const std::string& site, int64_t steps, double compute_s) {
  if (steps < 1 || !measurement(compute_s)) return;
  SiteSpeed& s = speeds_[site];
  s.steps_per_s = smooth(s.steps_per_s, static_cast<double>(steps) / compute_s);
}

void SiteSpeeds::add_upload(const std::string& site, double bytes, double seconds) {
  if (!measurement(bytes) || !measurement(seconds)) return;
  SiteSpeed& s = speeds_[site];
  s.upload_bps = smooth(s.upload_bps, bytes / seconds);
  s.upload_bytes = bytes;
}

void SiteSpeeds::add_download(const std::string& site, double bytes, double seconds) {
  if (!measurement(bytes) || !measurement(seconds)) return;
  SiteSpeed& s = speeds_[site];
  s.download_bps = smooth(s.download_bps, bytes / seconds);
  s.download_bytes = bytes;
}

void SiteSpeeds::add_overhead(const std::string& site, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return;
  SiteSpeed& s = speeds_[site];
  s.overhead_s = s.overhead_s >= 0 ? alpha_ * seconds + (1 - alpha_) * s.overhead_s : seconds;
}

std::map<std::string, double> SiteSpeeds::step_rates() const {
  std::map<std::string, double> r;
  for (const auto& [id, s] : speeds_)
    if (s.steps_per_s > 0) r[id] = s.steps_per_s;
  return r;
}

const SiteSpeed* SiteSpeeds::find(const std::string& site) const {
  auto it = speeds_.find(site);
  return it == speeds_.end() ? nullptr : &it->second;
}

}  // namespace longhaul::outer
