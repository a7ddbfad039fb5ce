// Content hashes of KV blocks, chained: a block's hash names its tokens and
// everything before them, so two sequences whose blocks have equal hashes
// hold equal K/V in them.
//
//   root      = H("kvinfer prefix cache v1", extra keys)
//   hash(b_0) = H(root, tokens of b_0)
//   hash(b_i) = H(hash(b_{i-1}), tokens of b_i)
//
// The extra keys name whatever else makes K/V differ for the same tokens:
// the model (weights), the KV element type, the block size, the activation
// precision, and a request's cache salt. They enter through the root, so
// every block of the chain depends on them. Token ids are hashed as
// little-endian int32, a parent as its 32 bytes; nothing is seeded or
// randomized, so a token list has the same hashes in every process.
//
// H is XXH3-128 (libxxhash; fast, the default) or SHA-256 (OpenSSL's
// libcrypto; for deployments whose tenants must not be able to construct a
// collision). An XXH3 hash fills the first 16 bytes and leaves the rest 0.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvinfer {

enum class BlockHashAlgorithm { kXxh3_128, kSha256 };
const char* BlockHashAlgorithmName(BlockHashAlgorithm a);  // "xxh3_128", "sha256"
std::optional<BlockHashAlgorithm> ParseBlockHashAlgorithm(std::string_view name);

struct BlockHash {
  std::array<uint8_t, 32> bytes{};
  auto operator<=>(const BlockHash&) const = default;
  // Lowercase hex of the bytes the algorithm fills (32 or 64 digits).
  std::string Hex(BlockHashAlgorithm a) const;
};

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const {
    // The bytes are already a uniform hash: any 8 of them are a good key.
    uint64_t w;
    static_assert(sizeof(w) <= sizeof(h.bytes));
    std::memcpy(&w, h.bytes.data(), sizeof(w));
    return static_cast<size_t>(w);
  }
};

class BlockHasher {
 public:
  explicit BlockHasher(BlockHashAlgorithm algorithm = BlockHashAlgorithm::kXxh3_128)
      : algorithm_(algorithm) {}

  BlockHashAlgorithm algorithm() const { return algorithm_; }
  // The root of every chain with these extra keys (each key is hashed with
  // its length, so ("ab", "c") and ("a", "bc") differ).
  BlockHash Root(std::span<const std::string> extra_keys) const;
  // hash(block) from its parent's hash (or the root) and its token ids.
  BlockHash Next(const BlockHash& parent, std::span<const int32_t> tokens) const;
  // The hashes of the first floor(tokens.size() / block_size) blocks,
  // appended to `out` (which is cleared first).
  void Chain(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
             std::vector<BlockHash>& out) const;
  // Raw H over bytes (the building block of the above; tests).
  BlockHash Digest(std::span<const uint8_t> data) const;

 private:
  BlockHashAlgorithm algorithm_;
  // Next's input (parent + token bytes), kept so that hashing a block
  // allocates nothing once it has grown to a block's size. One hasher is
  // used by one thread (its KvManager's).
  mutable std::vector<uint8_t> scratch_;
};

}  // namespace kvinfer
