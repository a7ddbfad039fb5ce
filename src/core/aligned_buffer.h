// A move-only, 64-byte aligned byte buffer, zero-initialised unless asked
// not to be. An uninitialised buffer costs no memory until its pages are
// first written (large allocations are fresh mappings), which is what lets
// the KV pool's resident size grow with what the cache actually holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace kvinfer {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  enum class Init { kZero, kUninitialized };

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes, Init init = Init::kZero) : size_(bytes) {
    if (bytes == 0) return;
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_ = static_cast<std::byte*>(std::aligned_alloc(kAlignment, rounded));
    if (data_ == nullptr) throw std::bad_alloc();
    if (init == Init::kZero) std::memset(data_, 0, rounded);
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return reinterpret_cast<const T*>(data_);
  }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// `count` objects of T in `buf`, 64-byte aligned, growing buf when needed:
// scratch that a kernel keeps per thread (in its caller's context) and
// reuses across calls, so a step allocates nothing once the largest size has been seen.
// (A vector's own allocator is not relied on for the alignment of SIMD
// types.)
template <typename T>
T* AlignedScratch(std::vector<uint8_t>& buf, size_t count) {
  const size_t bytes = count * sizeof(T) + AlignedBuffer::kAlignment;
  if (buf.size() < bytes) buf.resize(bytes);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<T*>(buf.data() +
                              (AlignedBuffer::kAlignment - p % AlignedBuffer::kAlignment) %
                                  AlignedBuffer::kAlignment);
}

}  // namespace kvinfer
