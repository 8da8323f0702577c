// inner::ResidualBackup: the site's file-backed copy of the residual for a refused upload
// (issue 13 §2) restores bitwise what was saved (NaN payloads and -0 included), once.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>

#include "inner/residual_backup.h"

namespace longhaul::inner {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("lh_residual_backup_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

void round_trip(const torch::Device& dev) {
  const fs::path f = temp_file("backup.bin");
  ResidualBackup b(f);
  EXPECT_FALSE(b.valid());
  const int64_t n = (int64_t{1} << 24) + 1001;  // more than one chunk of host scratch
  torch::Tensor saved = torch::randn({n}) * 1e-3;
  saved[0] = -0.0f;
  saved[1] = std::numeric_limits<float>::quiet_NaN();
  saved[n - 1] = std::numeric_limits<float>::denorm_min();
  const torch::Tensor on_dev = saved.to(dev);
  b.save(on_dev, 3);
  EXPECT_TRUE(b.valid());
  EXPECT_EQ(b.tag(), 3);
  EXPECT_TRUE(fs::exists(f));
  torch::Tensor dst = torch::zeros({n}, torch::TensorOptions().device(dev));
  EXPECT_TRUE(b.restore_into(dst));
  const torch::Tensor back = dst.cpu();
  EXPECT_EQ(0, std::memcmp(back.data_ptr<float>(), saved.data_ptr<float>(), n * sizeof(float)));
  EXPECT_FALSE(b.valid());
  EXPECT_FALSE(fs::exists(f));
  EXPECT_FALSE(b.restore_into(dst));  // once only

  b.save(on_dev.narrow(0, 0, 10), 0);
  EXPECT_THROW(b.restore_into(dst), std::runtime_error);  // another size
  b.save(on_dev.narrow(0, 0, 10), 0);
  b.drop();
  EXPECT_FALSE(b.valid());
  EXPECT_FALSE(fs::exists(f));
  b.save(on_dev.narrow(0, 0, 10), 0);
  fs::remove(f);
  EXPECT_THROW(b.restore_into(dst.narrow(0, 0, 10)), std::runtime_error);  // file gone
  // A short file is refused before anything is copied: dst keeps what it had.
  b.save(on_dev.narrow(0, 0, 10), 0);
  fs::resize_file(f, 9 * sizeof(float));
  dst.narrow(0, 0, 10).fill_(7.0f);
  EXPECT_THROW(b.restore_into(dst.narrow(0, 0, 10)), std::runtime_error);
  EXPECT_TRUE(torch::equal(dst.narrow(0, 0, 10).cpu(), torch::full({10}, 7.0f))) << "a short backup overwrote dst";
  fs::remove_all(f.parent_path());
}

TEST(ResidualBackup, RestoresBitwiseOnceOnTheCpu) { round_trip(torch::kCPU); }

TEST(ResidualBackup, RestoresBitwiseOnceOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU";
  round_trip(torch::Device(torch::kCUDA, 0));
}

}  // namespace
}  // namespace longhaul::inner
