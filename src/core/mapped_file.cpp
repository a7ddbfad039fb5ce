#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace kvinfer {

MappedFile MappedFile::Open(const std::string& path) {
  // O_NONBLOCK: opening a named pipe with no writer returns at once (and is
  // then refused as not a regular file) instead of blocking forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) Fail(StatusCode::kNotFound, "'{}' does not exist", path);
    if (err == EACCES || err == EPERM) {
      Fail(StatusCode::kInvalidArgument, "cannot open '{}': permission denied", path);
    }
    Fail(StatusCode::kNotFound, "cannot open '{}': {}", path, std::strerror(err));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    ::close(fd);
    Fail(StatusCode::kInvalidArgument, "'{}' is {}, not a regular file", path,
         dir ? "a folder" : "a device, pipe or socket");
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      Fail(StatusCode::kInternal, "cannot mmap '{}': {}", path, std::strerror(err));
    }
    f.data_ = static_cast<const uint8_t*>(p);
    f.owns_mapping_ = true;
  }
  ::close(fd);
  return f;
}

void MappedFile::DropPages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  // Advice only: a failure leaves the pages resident, which is harmless.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

MappedFile MappedFile::FromBytes(std::span<const uint8_t> bytes) {
  MappedFile f;
  f.data_ = bytes.data();
  f.size_ = bytes.size();
  f.path_ = "<memory>";
  return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (owns_mapping_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owns_mapping_ = std::exchange(other.owns_mapping_, false);
    path_ = std::move(other.path_);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (owns_mapping_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace kvinfer
