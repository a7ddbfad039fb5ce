// MappedFile: opening real files, and DropPages giving pages back to the
// kernel without changing what a later read sees.
#include "core/mapped_file.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"

namespace kvinfer {
namespace {

// Resident pages of this process (/proc/self/statm, second field).
long ResidentPages() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident;
}

class MappedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    page_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    path_ = ::testing::TempDir() + "/kvinfer_mapped_" + std::to_string(::getpid()) + ".bin";
    bytes_.resize(kPages * page_);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<uint8_t>((i * 131 + i / 4096) & 0xFF);
    std::ofstream out(path_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes_.data()), static_cast<std::streamsize>(bytes_.size()));
  }
  void TearDown() override { std::remove(path_.c_str()); }

  static constexpr size_t kPages = 512;
  size_t page_ = 4096;
  std::string path_;
  std::vector<uint8_t> bytes_;
};

TEST_F(MappedFileTest, DropPagesLeavesTheResidentSetAndTheBytesUnchanged) {
  const MappedFile f = MappedFile::Open(path_);
  ASSERT_EQ(f.size(), bytes_.size());
  // Fault every page in.
  unsigned sum = 0;
  for (size_t i = 0; i < f.size(); i += page_) sum += f.data()[i];
  const long before = ResidentPages();
  MappedFile::DropPages(f.data(), f.size());
  const long after = ResidentPages();
  // Nearly all of the 512 pages leave (allow for unrelated allocations).
  EXPECT_LE(after, before - static_cast<long>(kPages) * 3 / 4) << "resident " << before << " -> " << after;
  // A later read faults them in again from the file, unchanged.
  unsigned sum2 = 0;
  for (size_t i = 0; i < f.size(); i += page_) sum2 += f.data()[i];
  EXPECT_EQ(sum, sum2);
  EXPECT_EQ(std::vector<uint8_t>(f.data(), f.data() + f.size()), bytes_);
}

TEST_F(MappedFileTest, OpenNamesAMissingFile) {
  try {
    (void)MappedFile::Open(path_ + ".missing");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(".missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvinfer
