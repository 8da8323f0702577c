// The round journal and the background checkpoint writer (issue 13 §1): real files in a
// temp directory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <fstream>

#include "common/error.h"
#include "outer/checkpoint_writer.h"
#include "outer/round_journal.h"
#include "outer/test_dirs.h"
#include "transport/payload_spool.h"

namespace longhaul::testing {
namespace {

namespace fs = std::filesystem;
using outer::RoundJournal;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("lh_journal_" + name + "_" + std::to_string(::getpid()));
  remove_tree(d);
  fs::create_directories(d);
  return d;
}

transport::Bytes bytes_of(const std::string& s) {
  transport::Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

TEST(RoundJournal, KeepsASpooledUploadByNamingItAndAnInMemoryOneByWritingIt) {
  const fs::path d = temp_dir("keep");
  fs::create_directories(d / "spool");
  RoundJournal j(d / "journal");
  auto spooled = std::make_shared<transport::SpooledPayload>(d / "spool");
  const transport::Bytes a = bytes_of(std::string(3 << 20, 'a') + "tail");
  spooled->append(a);
  const std::string fa = j.keep_upload(7, 0, spooled, {});
  spooled.reset();  // the unnamed spool file is gone; the journal's name keeps its bytes
  EXPECT_EQ(fa, "r7-0.upl");
  EXPECT_EQ(j.load_upload(fa), a);
  EXPECT_TRUE(fs::is_empty(d / "spool"));
  const transport::Bytes b = bytes_of("in memory");
  const std::string fb = j.keep_upload(7, 1, nullptr, b);
  EXPECT_EQ(j.load_upload(fb), b);
  EXPECT_THROW(j.load_upload("../coordinator.ckpt"), DataError);
  EXPECT_THROW(j.load_upload("r7-9.upl"), UserError);  // missing: the error names the file
  remove_tree(d);
}

TEST(RoundJournal, RecordsRoundTripAndFilesGoOnlyForTheRoundsNamed) {
  const fs::path d = temp_dir("forget");
  RoundJournal j(d / "journal");
  for (int r = 3; r <= 6; ++r) {
    j.keep_upload(r, 0, nullptr, bytes_of("x"));
    j.write_record(r, {{"round", r}, {"folds", nlohmann::json::array()}});
  }
  EXPECT_EQ(j.record(4)->at("round"), 4);
  EXPECT_FALSE(j.record(8));
  j.forget_through(4);
  EXPECT_FALSE(j.record(3));
  EXPECT_FALSE(j.record(4));
  EXPECT_FALSE(fs::exists(d / "journal" / "r4-0.upl"));
  EXPECT_TRUE(j.record(5));
  j.forget_from(6);
  EXPECT_FALSE(j.record(6));
  EXPECT_FALSE(fs::exists(d / "journal" / "r6-0.upl"));
  EXPECT_TRUE(j.record(5));
  EXPECT_TRUE(fs::exists(d / "journal" / "r5-0.upl"));
  std::ofstream(d / "journal" / "r9.json") << "{not json";
  try {
    j.record(9);
    ADD_FAILURE() << "a damaged record was read";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("r9.json"), std::string::npos) << e.what();
  }
  remove_tree(d);
}

TEST(CheckpointWriter, WritesInTheBackgroundThenCallsBackAndReportsAFailureAtWait) {
  const fs::path d = temp_dir("writer");
  std::vector<float> master(1000, 1.5f), pub(1000, 2.5f), mom(1000, -0.5f);
  outer::CoordinatorStateView v{{{"next_round", 3}}, master, pub, mom};
  std::atomic<bool> durable{false};
  outer::CheckpointWriter w;
  w.start(d / "c.ckpt", v, [&] { durable = true; });
  w.wait();
  EXPECT_TRUE(durable.load());
  auto st = outer::load_coordinator_checkpoint(d / "c.ckpt");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], 3);
  EXPECT_EQ(st->theta_master, master);
  EXPECT_EQ(st->theta_published, pub);
  EXPECT_EQ(st->momentum, mom);
  durable = false;
  std::ofstream(d / "a-file") << "not a directory";
  w.start(d / "a-file" / "c.ckpt", v, [&] { durable = true; });
  EXPECT_THROW(w.wait(), std::exception);
  EXPECT_FALSE(durable.load());
  w.wait();  // the error was reported once
  remove_tree(d);
}

// A write that does not finish (held midway by the test pause) is reported while it runs and
// given up on at the timeout; it goes on, and a later wait still sees it through.
TEST(CheckpointWriter, WaitForGivesUpAtItsTimeoutWarningMeanwhileAndTheWriteGoesOn) {
  const fs::path d = temp_dir("writer_stall");
  std::vector<float> master(1000, 1.5f), pub(1000, 2.5f), mom(1000, -0.5f);
  outer::CoordinatorStateView v{{{"next_round", 4}}, master, pub, mom};
  std::atomic<bool> durable{false};
  outer::CheckpointWriter w;
  EXPECT_TRUE(w.wait_for(0.01, nullptr)) << "nothing in flight";
  w.start(d / "c.ckpt", v, [&] { durable = true; }, /*pause_s=*/1.5);
  EXPECT_EQ(w.path(), d / "c.ckpt");
  std::vector<double> warned;
  EXPECT_FALSE(w.wait_for(0.5, [&](double s) { warned.push_back(s); }, 0.1));
  EXPECT_FALSE(durable.load());
  ASSERT_GE(warned.size(), 3u);
  for (size_t i = 0; i < warned.size(); ++i) {
    EXPECT_GE(warned[i], 0.1 * static_cast<double>(i + 1) - 1e-3) << i;  // seconds waited so far
    EXPECT_LT(warned[i], 0.5) << i;
  }
  EXPECT_TRUE(w.wait_for(60, nullptr));
  EXPECT_TRUE(durable.load());
  auto st = outer::load_coordinator_checkpoint(d / "c.ckpt");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->meta["next_round"], 4);
  // A failed write is rethrown by wait_for as by wait().
  std::ofstream(d / "a-file") << "not a directory";
  w.start(d / "a-file" / "c.ckpt", v, nullptr);
  EXPECT_THROW(w.wait_for(60, nullptr), std::exception);
  remove_tree(d);
}

// The journal cannot keep an upload or write a record when its directory is no longer one (here
// a file took its place): a JournalError naming the file (the coordinator stops with it).
TEST(RoundJournal, AnUploadOrRecordThatCannotBeWrittenIsAJournalErrorNamingTheFile) {
  const fs::path d = temp_dir("gone");
  RoundJournal j(d / "journal");
  remove_tree(d / "journal");
  std::ofstream(d / "journal") << "not a directory";
  try {
    j.keep_upload(2, 0, nullptr, bytes_of("payload"));
    FAIL() << "kept an upload in a directory that is gone";
  } catch (const outer::JournalError& e) {
    EXPECT_NE(std::string(e.what()).find((d / "journal" / "r2-0.upl").string()), std::string::npos) << e.what();
  }
  try {
    j.write_record(2, {{"round", 2}});
    FAIL() << "wrote a record in a directory that is gone";
  } catch (const outer::JournalError& e) {
    EXPECT_NE(std::string(e.what()).find((d / "journal" / "r2.json").string() + ": cannot write the round's record"),
              std::string::npos)
        << e.what();
  }
  remove_tree(d);
}

}  // namespace
}  // namespace longhaul::testing
