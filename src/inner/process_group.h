// The processes of one site joined into a c10d process group (a site larger than a machine,
// or one process per accelerator vendor).
//
//   longhaul train|site ... --rank R --world-size W --rendezvous HOST:PORT
//
// Rank 0 hosts the rendezvous (a c10d TCPStore server on HOST:PORT); every rank connects to it,
// announces itself, and waits — at most `timeout` — for all W ranks before the group forms
// (inner/site_rendezvous.h). Then the ranks agree on the backend (inner/backend_choice.h):
//   ProcessGroupNCCL when every rank's devices are all CUDA, one GPU per rank, and this build
//     has NCCL ("auto"), or when "nccl" is requested (an error if any rank cannot);
//   ProcessGroupGloo otherwise (CPU tensors; a CUDA rank's gradients are staged through host
//     memory), or when "gloo" is requested.
// comm_device() says where collectives take their tensors.
//
// Failure contract: no call waits longer than `timeout`. A rank that never arrives, dies, or
// stops answering makes every call on the other ranks throw RankError naming the rank(s), e.g.
//   site process group: rank 1 of 2 did not arrive at 127.0.0.1:29500 within 5000 ms
//   site process group: all_reduce #12 failed: rank 1 of 2 stopped after #11 (dead or hung)
// Collectives are numbered; every rank must call them in the same order (as with c10d).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/error.h"

namespace longhaul::inner {

// A peer rank failed (never arrived, died, or timed out). A user-facing error: exit status 2.
class RankError : public UserError {
 public:
  using UserError::UserError;
};

struct ProcessGroupOptions {
  int rank = 0;
  int world_size = 1;
  std::string host = "127.0.0.1";  // rendezvous host (rank 0 listens on it)
  int port = 29500;                // rendezvous TCP port
  std::chrono::milliseconds timeout{60000};  // rendezvous and every collective
  std::string backend = "auto";    // "auto" | "gloo" | "nccl" (train.process_group_backend)
};

// Parses "HOST:PORT" ("[::1]:29500" for IPv6) into options.host/port; UserError otherwise.
void parse_rendezvous(const std::string& spec, ProcessGroupOptions& options);

class SiteProcessGroup {
 public:
  // Forms the group (blocking, <= timeout). `devices`: this rank's devices ("cpu", "cuda:N";
  // [0] is the primary, where an NCCL group communicates). Throws RankError / UserError (a
  // backend that is not possible, e.g. "nccl" on a rank without a CUDA device, names why).
  static std::unique_ptr<SiteProcessGroup> connect(
      const ProcessGroupOptions& options, const std::vector<std::string>& devices = {"cpu"});
  virtual ~SiteProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend_name() const = 0;
  // The device collectives run on: CPU for gloo, this rank's CUDA device for NCCL.
  virtual torch::Device comm_device() const = 0;

  // In-place sum over ranks; `t` contiguous, fp32/fp64/int64, on comm_device(). Every rank
  // ends with bitwise identical values. Returns once the result is in `t` (CPU-blocking).
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  // In-place: every rank gets root's `t` (same shape and dtype on every rank).
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  // ZeRO-1 (inner/sharded_optimizer.h). `in` [W * S] and `out` [S], contiguous fp32 on
  // comm_device(): out = Σ over ranks of their in[rank * S, (rank + 1) * S). Every rank passes
  // the same S.
  virtual void reduce_scatter_sum(torch::Tensor& in, torch::Tensor& out) = 0;
  // `in` [S] and `out` [W * S], contiguous fp32 on comm_device(): out[r * S, (r + 1) * S) =
  // rank r's `in`, bitwise.
  virtual void all_gather_into(torch::Tensor& in, torch::Tensor& out) = 0;
  // Every rank's value, in rank order.
  virtual std::vector<double> all_gather(double value) = 0;
  virtual std::vector<int64_t> all_gather(int64_t value) = 0;
  virtual void barrier() = 0;

  // A small control channel beside the collectives, in the rendezvous store (hosted by rank 0):
  // post() sets `key` to `value`; poll() returns the value once some rank posted it. Neither
  // waits for the other ranks, so a rank may wait for a key as long as rank 0 is alive; when
  // the store is gone (rank 0 died) they throw RankError within the timeout.
  virtual void post(const std::string& key, const std::string& value) = 0;
  virtual std::optional<std::string> poll(const std::string& key) = 0;
};

}  // namespace longhaul::inner
