// The site process group over ProcessGroupGloo: CPU tensors (a CUDA rank's gradients are
// staged through host memory by DeviceGroup).
//
// The PyPI torch wheel ships c10d's headers but not Gloo's; ProcessGroupGloo.hpp needs them.
// Debian's libgloo-dev provides them (scripts/bootstrap installs it). The only Gloo types this
// file touches are behind shared_ptr/intrusive_ptr; the object sizes it allocates were checked
// against the wheel's libtorch_cpu (ProcessGroupGloo 488 bytes, Options 176 bytes, 2.11.0).
#if __has_include(<gloo/context.h>)
#define USE_C10D_GLOO 1
#define LONGHAUL_HAVE_GLOO 1
#endif

#include <cstdlib>

#include "inner/c10d_site_group.h"

#ifdef LONGHAUL_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include "common/log.h"

namespace longhaul::inner {

#ifdef LONGHAUL_HAVE_GLOO
namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

class GlooSiteGroup final : public C10dSiteGroup {
 public:
  explicit GlooSiteGroup(std::unique_ptr<SiteRendezvous> rdv)
      : C10dSiteGroup(std::move(rdv), "gloo", torch::kCPU) {
    const auto& o = options();
    // The interface: GLOO_SOCKET_IFNAME (as in PyTorch), else the rendezvous host's for
    // loopback runs, else the one the machine's hostname resolves to.
    auto opts = c10d::ProcessGroupGloo::Options::create_default(o.timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname, false));
    else if (is_loopback(o.host))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.host, false));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice(false));
    try {
      backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(rendezvous().backend_store("gloo"),
                                                             o.rank, o.world_size, opts);
    } catch (const std::exception& e) {
      rendezvous().mark_failed();
      throw RankError("site process group: forming the Gloo group at " + rendezvous().where() +
                      " failed: " + first_line(e.what()));
    }
    LH_LOG(Info, "site-pg") << "rank " << o.rank << " of " << o.world_size << " joined "
                            << rendezvous().where() << " (gloo)";
  }
};

}  // namespace

std::unique_ptr<SiteProcessGroup> make_gloo_site_group(std::unique_ptr<SiteRendezvous> rdv) {
  return std::make_unique<GlooSiteGroup>(std::move(rdv));
}

#else

std::unique_ptr<SiteProcessGroup> make_gloo_site_group(std::unique_ptr<SiteRendezvous>) {
  throw UserError(
      "this longhaul was built without Gloo headers (install libgloo-dev and rebuild): "
      "multi-process sites on CPU or mixed devices are unavailable");
}

#endif

}  // namespace longhaul::inner
