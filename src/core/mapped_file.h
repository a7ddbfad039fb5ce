// A read-only memory-mapped file. Move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kvinfer {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error(kNotFound) if the file cannot be opened, kDataLoss if it is
  // not a regular file.
  static MappedFile Open(const std::string& path);
  // Wraps caller-owned bytes (tests, fuzzers); the bytes must outlive this.
  static MappedFile FromBytes(std::span<const uint8_t> bytes);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  // Tells the kernel that the pages wholly inside [p, p + n) of a read-only
  // file mapping are not needed now: they leave the resident set and a later
  // read faults them in again from the file, unchanged. Only for ranges of a
  // mapping made by Open (on anonymous memory it would zero them).
  static void DropPages(const void* p, size_t n);

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  std::string path_;
};

}  // namespace kvinfer
