#include "inner/backend_choice.h"

#include <map>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace longhaul::inner {
namespace {

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

// Why the ranks cannot form an NCCL group; "" when they can.
std::string nccl_blocker(const std::vector<RankBackendInfo>& ranks) {
  const int n = static_cast<int>(ranks.size());
  for (int r = 0; r < n; ++r)
    if (!ranks[r].nccl_unavailable.empty())
      return "rank " + std::to_string(r) + " of " + std::to_string(n) +
             " cannot use NCCL: " + ranks[r].nccl_unavailable;
  std::map<std::string, int> owner;
  for (int r = 0; r < n; ++r) {
    auto [it, fresh] = owner.emplace(ranks[r].gpu, r);
    if (!fresh)
      return "ranks " + std::to_string(it->second) + " and " + std::to_string(r) + " of " +
             std::to_string(n) + " would share one GPU (" + ranks[r].gpu +
             "); NCCL needs one GPU per rank";
  }
  return "";
}

}  // namespace

std::string RankBackendInfo::encode() const {
  return nlohmann::json{
      {"requested", requested}, {"nccl_unavailable", nccl_unavailable}, {"gpu", gpu}}
      .dump();
}

RankBackendInfo RankBackendInfo::decode(const std::string& text, int rank) {
  try {
    const auto j = nlohmann::json::parse(text);
    RankBackendInfo i;
    i.requested = j.at("requested").get<std::string>();
    i.nccl_unavailable = j.at("nccl_unavailable").get<std::string>();
    i.gpu = j.at("gpu").get<std::string>();
    if (i.requested != "auto" && i.requested != "gloo" && i.requested != "nccl")
      throw std::runtime_error("requested '" + i.requested + "'");
    return i;
  } catch (const std::exception& e) {
    throw UserError(
        "site process group: rank " + std::to_string(rank) +
        " posted an unreadable backend description (another longhaul version?): " + e.what());
  }
}

BackendChoice choose_backend(const std::vector<RankBackendInfo>& ranks) {
  LH_CHECK(!ranks.empty(), "no ranks");
  std::vector<int> want_gloo, want_nccl;
  for (int r = 0; r < static_cast<int>(ranks.size()); ++r) {
    if (ranks[r].requested == "gloo") want_gloo.push_back(r);
    if (ranks[r].requested == "nccl") want_nccl.push_back(r);
  }
  if (!want_gloo.empty() && !want_nccl.empty())
    throw UserError("site process group: train.process_group_backend disagrees across ranks: " +
                    rank_list(want_gloo) + (want_gloo.size() == 1 ? " asks" : " ask") +
                    " for gloo, " + rank_list(want_nccl) +
                    " for nccl (use the same value, or \"auto\")");
  if (!want_gloo.empty()) return {"gloo", "requested by " + rank_list(want_gloo)};
  const std::string blocker = nccl_blocker(ranks);
  if (!want_nccl.empty()) {
    if (!blocker.empty())
      throw UserError("site process group: backend \"nccl\" (train.process_group_backend of " +
                      rank_list(want_nccl) + ") is not possible: " + blocker +
                      " (use \"gloo\" or \"auto\")");
    return {"nccl", "requested by " + rank_list(want_nccl)};
  }
  if (blocker.empty()) return {"nccl", "auto: every rank's devices are CUDA"};
  return {"gloo", "auto: " + blocker};
}

}  // namespace longhaul::inner
