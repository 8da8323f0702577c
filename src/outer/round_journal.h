// The round journal: what lets the coordinator publish a round's result BEFORE that round's
// checkpoint is durable (issue 13 §1: the checkpoint is written in the background, off the
// round's tail) and still never lose or re-apply a round.
//
// A round r is redone from the checkpoint of round r − 1 plus:
//  * the payload of every upload folded into round r, kept as a durable file when accepted
//    (a spooled upload is given a name, not copied: SpooledPayload::keep_as);
//  * the round's record, written atomically and durably before the result is published: the
//    folds in order (file, weight, inner steps, norm), the fragment, the download codec
//    options, the θ hash the round published, and the checkpoint metadata after the round.
// Aggregation, the outer step and the download encode are deterministic, so the redo gives
// θ bitwise; the coordinator checks the θ hash against the record's and refuses to continue
// on a mismatch (DataError naming the file).
//
// Files, in <run_dir>/journal: r<round>-<k>.upl (k-th fold of the round), r<round>.json.
// Once checkpoint r is durable, every file of rounds <= r is deleted (forget_through).
// Disk: one round's uploads, K × (upload size), plus the next round's while it runs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "transport/bytes.h"
#include "transport/payload_spool.h"

namespace longhaul::outer {

// The coordinator's own disk refused a journal file. Not a site's fault: the coordinator stops
// (exit 1) rather than refuse the site's work; an upload it could not keep stays with its site,
// which re-sends it to the restarted coordinator.
class JournalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RoundJournal {
 public:
  explicit RoundJournal(std::filesystem::path dir);  // created if missing
  const std::filesystem::path& dir() const { return dir_; }

  // Keeps the k-th upload folded into `round`, durably: `spooled` (if set) is named in place,
  // else `payload` is written. Returns the file name (relative to dir()). Throws JournalError
  // naming the file when the disk refuses it.
  std::string keep_upload(int64_t round, int k, const std::shared_ptr<const transport::SpooledPayload>& spooled,
                          const transport::Bytes& payload);
  transport::Bytes load_upload(const std::string& name) const;  // DataError naming the file

  void write_record(int64_t round, const nlohmann::json& record);  // atomic and durable; JournalError
  std::filesystem::path record_path(int64_t round) const;  // where write_record() puts it
  // The record of `round`, or nullopt when there is none; DataError naming the file when
  // it is not JSON.
  std::optional<nlohmann::json> record(int64_t round) const;

  // Deletes every file of rounds <= round. Safe from another thread than keep_upload's.
  void forget_through(int64_t round);
  // Deletes every file of rounds >= round (uploads of a round that never got its record).
  void forget_from(int64_t round);

 private:
  std::filesystem::path dir_;
};

}  // namespace longhaul::outer
