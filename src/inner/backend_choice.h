// Which c10d backend a multi-process site uses. Every rank posts its RankBackendInfo at the
// rendezvous and every rank applies choose_backend to the same list, so all agree:
//   - "gloo" or "nccl" requested explicitly (train.process_group_backend) by any rank wins;
//     ranks that request different explicit backends are an error;
//   - NCCL is possible when every rank can use it (the build has NCCL, all of the rank's
//     devices are CUDA, LibTorch sees them) and no two ranks' primary devices are the same GPU;
//   - "auto" everywhere: NCCL when possible, else Gloo; an explicit "nccl" that is not
//     possible fails on every rank with a UserError naming the first rank that cannot and why.
#pragma once

#include <string>
#include <vector>

namespace longhaul::inner {

struct RankBackendInfo {
  std::string requested = "auto";  // "auto" | "gloo" | "nccl"
  std::string nccl_unavailable;    // why this rank cannot use NCCL; "" = it can
  std::string gpu;                 // identity (UUID) of its primary CUDA device; "" = none

  std::string encode() const;  // one line of JSON, for the rendezvous store
  // UserError naming `rank` on a malformed value.
  static RankBackendInfo decode(const std::string& text, int rank);
};

struct BackendChoice {
  std::string backend;  // "gloo" | "nccl"
  std::string why;      // one line for the log
};

// `ranks[r]` is rank r's info. Throws UserError (see above).
BackendChoice choose_backend(const std::vector<RankBackendInfo>& ranks);

}  // namespace longhaul::inner
