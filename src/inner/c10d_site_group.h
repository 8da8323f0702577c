// SiteProcessGroup over a c10d backend (internal to src/inner: SiteProcessGroup::connect picks
// the backend and calls one of the factories below).
//
// C10dSiteGroup holds what every backend shares: the rendezvous (store, control channel,
// progress records) and the numbered collectives with their failure contract — each waits at
// most the timeout, and a failure throws RankError naming the ranks that never reached it.
// The backends beside it: gloo_site_group.cpp (CPU tensors) and nccl_site_group.cpp (this
// rank's CUDA device).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "inner/process_group.h"
#include "inner/site_rendezvous.h"

namespace longhaul::inner {

class C10dSiteGroup : public SiteProcessGroup {
 public:
  ~C10dSiteGroup() override;

  int rank() const override { return rdv_->options().rank; }
  int world_size() const override { return rdv_->options().world_size; }
  std::string backend_name() const override { return name_; }
  torch::Device comm_device() const override { return comm_; }

  void all_reduce_sum(torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root) override;
  void reduce_scatter_sum(torch::Tensor& in, torch::Tensor& out) override;
  void all_gather_into(torch::Tensor& in, torch::Tensor& out) override;
  std::vector<double> all_gather(double value) override;
  std::vector<int64_t> all_gather(int64_t value) override;
  void barrier() override;
  void post(const std::string& key, const std::string& value) override { rdv_->post(key, value); }
  std::optional<std::string> poll(const std::string& key) override { return rdv_->poll(key); }

 private:
  std::unique_ptr<SiteRendezvous> rdv_;  // declared before backend_: destroyed after it

 protected:
  // `name`: "gloo" | "nccl"; `comm`: where collectives take their tensors.
  C10dSiteGroup(std::unique_ptr<SiteRendezvous> rdv, std::string name, torch::Device comm);

  const ProcessGroupOptions& options() const { return rdv_->options(); }
  SiteRendezvous& rendezvous() { return *rdv_; }
  // Runs `body` as collective #n (numbered across this group's lifetime); `body` must itself
  // return within the timeout. Any exception becomes a RankError naming the ranks behind.
  void numbered(const char* what, const std::function<void()>& body);
  // A collective: starts the work and waits for it (CPU-blocking) at most the timeout.
  void collective(const char* what, const std::function<c10::intrusive_ptr<c10d::Work>()>& start);

  c10::intrusive_ptr<c10d::Backend> backend_;  // set by the subclass constructor

 private:
  std::string name_;
  torch::Device comm_;
  int64_t seq_ = 0;
  bool failed_ = false;
};

// The Gloo group (CPU tensors). UserError when this build has no Gloo headers.
std::unique_ptr<SiteProcessGroup> make_gloo_site_group(std::unique_ptr<SiteRendezvous> rdv);

// Why this rank cannot join an NCCL group with `devices` (this rank's devices, [0] the
// primary); empty when it can. Checked in order: the build has NCCL, every device is CUDA,
// LibTorch sees a GPU, the device indices exist.
std::string nccl_unavailable_reason(const std::vector<std::string>& devices);
// A stable identity of the CUDA device `device` (its UUID), so ranks can tell whether two of
// them would share one GPU; "" without NCCL support.
std::string cuda_device_identity(const std::string& device);
// The NCCL group on `device` (a CUDA device, from a rank that nccl_unavailable_reason clears).
std::unique_ptr<SiteProcessGroup> make_nccl_site_group(std::unique_ptr<SiteRendezvous> rdv,
                                                       const std::string& device);

}  // namespace longhaul::inner
