// The site process group over ProcessGroupNCCL: collectives on this rank's primary CUDA
// device, so an all-CUDA site all-reduces its gradients GPU to GPU, without host staging.
//
// Built when CMake finds LibTorch's CUDA build and nccl.h (LONGHAUL_HAVE_NCCL, see
// src/inner/CMakeLists.txt); libtorch_cuda.so exports ProcessGroupNCCL. This file constructs
// ProcessGroupNCCL and its Options itself, so their sizes must match the wheel's: checked
// against libtorch_python's allocations for torch 2.11.0+cu130 with NCCL 2.28.9 (the
// static_asserts below fail on a LibTorch or nccl.h that lays them out differently).
//
// Failure contract (that of SiteProcessGroup): every collective blocks the calling thread for
// at most the timeout (WorkNCCL::wait(timeout) aborts the communicator and throws), and the
// communicator is set up eagerly, also within the timeout, right after the rendezvous.
// TORCH_NCCL_BLOCKING_WAIT=1 and TORCH_NCCL_ASYNC_ERROR_HANDLING=2 (CleanUpOnly) are set unless
// already exported: no watchdog thread takes the process down (the default, 3, does) before
// the RankError names the rank.
#include "inner/c10d_site_group.h"

#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include <torch/cuda.h>

#ifdef LONGHAUL_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <ATen/cuda/CUDAContext.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "common/log.h"

namespace longhaul::inner {

#ifdef LONGHAUL_HAVE_NCCL
namespace {

static_assert(sizeof(c10d::ProcessGroupNCCL) == 1112,
              "ProcessGroupNCCL's layout differs from torch 2.11.0+cu130's: re-check this file");
static_assert(
    sizeof(c10d::ProcessGroupNCCL::Options) == 248,
    "ProcessGroupNCCL::Options' layout differs from torch 2.11.0+cu130's (nccl.h version?)");

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

torch::Device cuda_device(const std::string& spec) {
  torch::Device d(spec);
  return torch::Device(torch::kCUDA, d.has_index() ? d.index() : c10::DeviceIndex{0});
}

class NcclSiteGroup final : public C10dSiteGroup {
 public:
  NcclSiteGroup(std::unique_ptr<SiteRendezvous> rdv, torch::Device device)
      : C10dSiteGroup(std::move(rdv), "nccl", device) {
    const auto& o = options();
    ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = o.timeout;
    try {
      nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(rendezvous().backend_store("nccl"),
                                                          o.rank, o.world_size, opts);
    } catch (const std::exception& e) {
      rendezvous().mark_failed();
      throw RankError("site process group: forming the NCCL group at " + rendezvous().where() +
                      " failed on rank " + std::to_string(o.rank) + ": " + first_line(e.what()));
    }
    backend_ = nccl_;
    nccl_->setBoundDeviceId(device);
    try {
      numbered("NCCL communicator setup", [&] { connect_within_timeout(device); });
    } catch (...) {
      close();
      throw;
    }
    LH_LOG(Info, "site-pg") << "rank " << o.rank << " of " << o.world_size << " joined "
                            << rendezvous().where() << " (nccl on " << device.str() << ")";
  }

  ~NcclSiteGroup() override { close(); }

 private:
  // ncclCommInitRank blocks until every rank joins; a rank that dies before it does would
  // block it forever, so it runs on a helper thread that keeps its own reference to the
  // backend, and this rank gives up after the timeout.
  void connect_within_timeout(torch::Device device) {
    auto backend = nccl_;
    auto done = std::make_shared<std::promise<void>>();
    auto ready = done->get_future();
    std::thread([backend, device, done] {
      try {
        backend->eagerConnectSingleDevice(device);
        done->set_value();
      } catch (...) {
        done->set_exception(std::current_exception());
      }
    }).detach();
    if (ready.wait_for(options().timeout) != std::future_status::ready)
      throw std::runtime_error("ncclCommInitRank did not return within " +
                               std::to_string(options().timeout.count()) + " ms");
    ready.get();
  }

  // Every collective has completed when it returned (they block the CPU), so there is nothing
  // to flush: abort (ncclCommAbort: local, bounded by the backend's timeout) rather than
  // shutdown (ncclCommFinalize, which may wait for peers that already left or failed).
  void close() {
    if (!nccl_) return;
    try {
      nccl_->abort();
    } catch (const std::exception& e) {
      LH_LOG(Warn, "site-pg") << "closing the NCCL group: " << first_line(e.what());
    }
    nccl_.reset();
  }

  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
};

}  // namespace

std::string nccl_unavailable_reason(const std::vector<std::string>& devices) {
  if (devices.empty()) return "this rank has no devices";
  for (size_t i = 0; i < devices.size(); ++i)
    if (!torch::Device(devices[i]).is_cuda())
      return "devices[" + std::to_string(i) + "] = \"" + devices[i] + "\" is not a CUDA device";
  if (!torch::cuda::is_available()) return "LibTorch sees no CUDA GPU on this machine";
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  for (size_t i = 0; i < devices.size(); ++i) {
    const torch::Device d(devices[i]);
    if (d.has_index() && d.index() >= count)
      return "devices[" + std::to_string(i) + "] = \"" + devices[i] + "\": only " +
             std::to_string(count) + " CUDA device(s) visible";
  }
  return "";
}

std::string cuda_device_identity(const std::string& device) {
  const auto* prop = at::cuda::getDeviceProperties(cuda_device(device).index());
  std::string hex = "GPU-";
  char b[3];
  for (int i = 0; i < 16; ++i) {
    std::snprintf(b, sizeof(b), "%02x", static_cast<unsigned char>(prop->uuid.bytes[i]));
    hex += b;
  }
  return hex;
}

std::unique_ptr<SiteProcessGroup> make_nccl_site_group(std::unique_ptr<SiteRendezvous> rdv,
                                                       const std::string& device) {
  return std::make_unique<NcclSiteGroup>(std::move(rdv), cuda_device(device));
}

#else

std::string nccl_unavailable_reason(const std::vector<std::string>&) {
  return "this longhaul was built without NCCL (CMake found no CUDA toolkit, no CUDA LibTorch or "
         "no nccl.h)";
}

std::string cuda_device_identity(const std::string&) { return ""; }

std::unique_ptr<SiteProcessGroup> make_nccl_site_group(std::unique_ptr<SiteRendezvous>,
                                                       const std::string&) {
  throw UserError("process group backend 'nccl': " + nccl_unavailable_reason({}));
}

#endif

}  // namespace longhaul::inner
