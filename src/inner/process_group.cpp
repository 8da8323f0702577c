// SiteProcessGroup::connect: validate, rendezvous, agree on the backend, form it.
#include "inner/process_group.h"

#include "common/log.h"
#include "inner/backend_choice.h"
#include "inner/c10d_site_group.h"
#include "inner/site_rendezvous.h"

namespace longhaul::inner {

void parse_rendezvous(const std::string& spec, ProcessGroupOptions& options) {
  const auto colon = spec.rfind(':');
  auto bad = [&] {
    return UserError("--rendezvous '" + spec + "': expected HOST:PORT (e.g. 127.0.0.1:29500)");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) throw bad();
  std::string host = spec.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = spec.substr(colon + 1);
  if (host.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    throw bad();
  const int p = std::stoi(port);
  if (p < 1 || p > 65535) throw bad();
  options.host = host;
  options.port = p;
}

std::unique_ptr<SiteProcessGroup> SiteProcessGroup::connect(
    const ProcessGroupOptions& o, const std::vector<std::string>& devices) {
  if (o.world_size < 1 || o.world_size > 4096)
    throw UserError("--world-size " + std::to_string(o.world_size) + ": expected 1..4096");
  if (o.rank < 0 || o.rank >= o.world_size)
    throw UserError("--rank " + std::to_string(o.rank) + ": expected 0.." + std::to_string(o.world_size - 1));
  if (o.timeout.count() <= 0) throw UserError("process group timeout must be > 0 ms");
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    throw UserError("process group backend '" + o.backend + "': expected auto, gloo or nccl");
  if (devices.empty()) throw UserError("site process group: this rank has no devices");

  RankBackendInfo mine;
  mine.requested = o.backend;
  mine.nccl_unavailable = nccl_unavailable_reason(devices);
  if (mine.nccl_unavailable.empty()) mine.gpu = cuda_device_identity(devices[0]);

  auto rdv = std::make_unique<SiteRendezvous>(o);
  std::vector<RankBackendInfo> ranks;
  const auto posted = rdv->exchange("backend", mine.encode());
  for (int r = 0; r < o.world_size; ++r) ranks.push_back(RankBackendInfo::decode(posted[r], r));
  const BackendChoice choice = choose_backend(ranks);  // the same on every rank
  LH_LOG(Info, "site-pg") << "rank " << o.rank << " of " << o.world_size << ": backend "
                          << choice.backend << " (" << choice.why << ")";
  if (choice.backend == "nccl") return make_nccl_site_group(std::move(rdv), devices[0]);
  return make_gloo_site_group(std::move(rdv));
}

}  // namespace longhaul::inner
