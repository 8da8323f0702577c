#include "inner/c10d_site_group.h"

#include <stdexcept>

#include "common/error.h"

namespace longhaul::inner {
namespace {
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
}  // namespace

C10dSiteGroup::C10dSiteGroup(std::unique_ptr<SiteRendezvous> rdv, std::string name,
                             torch::Device comm)
    : rdv_(std::move(rdv)), name_(std::move(name)), comm_(comm) {}

C10dSiteGroup::~C10dSiteGroup() {
  backend_.reset();  // before the rendezvous: rank 0's store must outlive every backend
  if (failed_) rdv_->mark_failed();
}

void C10dSiteGroup::numbered(const char* what, const std::function<void()>& body) {
  ++seq_;
  try {
    rdv_->record_progress(seq_);
    body();
  } catch (const std::exception& e) {
    failed_ = true;
    throw RankError("site process group: rank " + std::to_string(rank()) + ": " + what + " #" +
                    std::to_string(seq_) + " failed: " + rdv_->diagnose(seq_) + " [" +
                    first_line(e.what()) + "]");
  }
}

void C10dSiteGroup::collective(const char* what,
                               const std::function<c10::intrusive_ptr<c10d::Work>()>& start) {
  if (failed_)  // the backend is broken (Gloo pairs closed, NCCL communicator aborted)
    throw RankError("site process group: rank " + std::to_string(rank()) + ": " + what +
                    " after an earlier collective failed");
  numbered(what, [&] {
    auto work = start();
    if (!work->wait(options().timeout)) throw std::runtime_error("timed out");
  });
}

void C10dSiteGroup::all_reduce_sum(torch::Tensor& t) {
  LH_CHECK(t.is_contiguous() && t.device() == comm_, "all_reduce_sum needs a contiguous tensor on ",
           comm_.str(), ", got one on ", t.device().str());
  std::vector<at::Tensor> ts{t};
  collective("all_reduce", [&] { return backend_->allreduce(ts, c10d::AllreduceOptions{}); });
}

void C10dSiteGroup::broadcast(torch::Tensor& t, int root) {
  LH_CHECK(t.is_contiguous() && t.device() == comm_, "broadcast needs a contiguous tensor on ",
           comm_.str(), ", got one on ", t.device().str());
  LH_CHECK(root >= 0 && root < world_size(), "root = ", root);
  std::vector<at::Tensor> ts{t};
  c10d::BroadcastOptions bo;
  bo.rootRank = root;
  collective("broadcast", [&] { return backend_->broadcast(ts, bo); });
}

void C10dSiteGroup::reduce_scatter_sum(torch::Tensor& in, torch::Tensor& out) {
  LH_CHECK(in.is_contiguous() && out.is_contiguous() && in.device() == comm_ && out.device() == comm_,
           "reduce_scatter_sum needs contiguous tensors on ", comm_.str());
  LH_CHECK(in.numel() == out.numel() * world_size(), "reduce_scatter_sum: in has ", in.numel(),
           " elements, expected ", world_size(), " x ", out.numel());
  collective("reduce_scatter", [&] { return backend_->_reduce_scatter_base(out, in, c10d::ReduceScatterOptions{}); });
}

void C10dSiteGroup::all_gather_into(torch::Tensor& in, torch::Tensor& out) {
  LH_CHECK(in.is_contiguous() && out.is_contiguous() && in.device() == comm_ && out.device() == comm_,
           "all_gather_into needs contiguous tensors on ", comm_.str());
  LH_CHECK(out.numel() == in.numel() * world_size(), "all_gather_into: out has ", out.numel(),
           " elements, expected ", world_size(), " x ", in.numel());
  collective("all_gather", [&] { return backend_->_allgather_base(out, in, c10d::AllgatherOptions{}); });
}

std::vector<double> C10dSiteGroup::all_gather(double value) {
  auto t = torch::zeros({world_size()}, torch::kFloat64);
  t[rank()] = value;  // a sum of one value and zeros: exact
  t = t.to(comm_);
  all_reduce_sum(t);
  t = t.cpu();
  return {t.data_ptr<double>(), t.data_ptr<double>() + world_size()};
}

std::vector<int64_t> C10dSiteGroup::all_gather(int64_t value) {
  auto t = torch::zeros({world_size()}, torch::kInt64);
  t[rank()] = value;
  t = t.to(comm_);
  all_reduce_sum(t);
  t = t.cpu();
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + world_size()};
}

void C10dSiteGroup::barrier() {
  auto t = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(comm_));
  all_reduce_sum(t);
}

}  // namespace longhaul::inner
