#include "outer/round_journal.h"

#include <charconv>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul::outer {

namespace fs = std::filesystem;

namespace {
// The round a journal file belongs to ("r12-0.upl", "r12.json" -> 12), or -1 for other names.
int64_t round_of(const std::string& name) {
  if (name.size() < 2 || name[0] != 'r') return -1;
  int64_t r = -1;
  const char* b = name.data() + 1;
  const char* e = name.data() + name.size();
  auto [p, ec] = std::from_chars(b, e, r);
  if (ec != std::errc() || p == b || p == e || (*p != '-' && *p != '.')) return -1;
  return r;
}

std::string record_name(int64_t round) { return "r" + std::to_string(round) + ".json"; }
}  // namespace

RoundJournal::RoundJournal(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }

std::string RoundJournal::keep_upload(int64_t round, int k,
                                      const std::shared_ptr<const transport::SpooledPayload>& spooled,
                                      const transport::Bytes& payload) {
  const std::string name = "r" + std::to_string(round) + "-" + std::to_string(k) + ".upl";
  const fs::path path = dir_ / name;
  std::error_code ec;
  fs::remove(path, ec);  // a leftover of an earlier process that never recorded this round
  try {
    if (spooled && spooled->keep_as(path)) return name;
    write_file_atomic(path, std::span<const std::byte>(payload.data(), payload.size()));
  } catch (const std::exception& e) {
    throw JournalError(path.string() + ": cannot keep the upload in the round journal: " + e.what());
  }
  return name;
}

transport::Bytes RoundJournal::load_upload(const std::string& name) const {
  if (name.find('/') != std::string::npos || round_of(name) < 0)
    throw DataError((dir_ / name).string() + ": not a journal upload file name");
  // Straight into the payload buffer (one copy of an upload, not three).
  const fs::path path = dir_ / name;
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (!in || ec) throw DataError(path.string() + ": journal upload missing or unreadable");
  transport::Bytes b(static_cast<size_t>(size));
  if (!in.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(size)))
    throw DataError(path.string() + ": journal upload shorter than its size");
  return b;
}

fs::path RoundJournal::record_path(int64_t round) const { return dir_ / record_name(round); }

void RoundJournal::write_record(int64_t round, const nlohmann::json& record) {
  const fs::path path = record_path(round);
  try {
    write_file_atomic(path, record.dump());
  } catch (const std::exception& e) {
    throw JournalError(path.string() + ": cannot write the round's record in the round journal: " + e.what());
  }
}

std::optional<nlohmann::json> RoundJournal::record(int64_t round) const {
  const fs::path path = record_path(round);
  if (!fs::exists(path)) return std::nullopt;
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path.string() + ": not a round journal record: " + e.what());
  }
}

void RoundJournal::forget_through(int64_t round) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const int64_t r = round_of(e.path().filename().string());
    if (r >= 0 && r <= round) fs::remove(e.path(), ec);
  }
}

void RoundJournal::forget_from(int64_t round) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const int64_t r = round_of(e.path().filename().string());
    if (r >= round) fs::remove(e.path(), ec);
  }
}

}  // namespace longhaul::outer
