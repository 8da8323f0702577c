// A file-backed copy of (a slice of) a site's error-feedback residual, taken before an upload
// and restored if the coordinator refuses that upload (issue 13 §2: kept on disk, not as 4N
// bytes of memory through the upload). The residual may live on any torch device; it is copied
// a chunk at a time (64 MiB of host scratch at most). Not fsynced: it serves only the running
// process (a restarted site restores its residual from its checkpoint).
#pragma once

#include <torch/torch.h>

#include <filesystem>

namespace longhaul::inner {

class ResidualBackup {
 public:
  explicit ResidualBackup(std::filesystem::path file) : file_(std::move(file)) {}

  // Writes `values` (1-D fp32, any device) and remembers `tag` (e.g. the fragment); replaces
  // any earlier backup. Throws std::runtime_error if the file cannot be written.
  void save(const torch::Tensor& values, int tag);
  bool valid() const { return valid_; }
  int tag() const { return tag_; }
  // Copies the backup into `dst` (1-D fp32, any device, as many values as were saved) and drops
  // it. False (dst untouched) when there is none. Throws, dst untouched, if the file is missing
  // or short; only a read error midway (a failing disk) leaves dst partly restored.
  bool restore_into(const torch::Tensor& dst);
  // Forgets the backup and removes its file (the upload it guarded was settled).
  void drop();

 private:
  std::filesystem::path file_;
  bool valid_ = false;
  int tag_ = 0;
  int64_t saved_ = 0;
};

}  // namespace longhaul::inner
