#include "kv/block_hash.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <cstring>

#include "core/error.h"

namespace kvinfer {
namespace {

constexpr std::string_view kDomain = "kvinfer prefix cache v1";

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void PutU64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

const char* BlockHashAlgorithmName(BlockHashAlgorithm a) {
  switch (a) {
    case BlockHashAlgorithm::kXxh3_128:
      return "xxh3_128";
    case BlockHashAlgorithm::kSha256:
      return "sha256";
  }
  return "?";
}

std::optional<BlockHashAlgorithm> ParseBlockHashAlgorithm(std::string_view name) {
  if (name == "xxh3_128" || name == "xxh3") return BlockHashAlgorithm::kXxh3_128;
  if (name == "sha256") return BlockHashAlgorithm::kSha256;
  return std::nullopt;
}

std::string BlockHash::Hex(BlockHashAlgorithm a) const {
  static constexpr char kDigits[] = "0123456789abcdef";
  const size_t n = a == BlockHashAlgorithm::kSha256 ? 32 : 16;
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[bytes[i] >> 4]);
    s.push_back(kDigits[bytes[i] & 15]);
  }
  return s;
}

BlockHash BlockHasher::Digest(std::span<const uint8_t> data) const {
  BlockHash h;
  switch (algorithm_) {
    case BlockHashAlgorithm::kXxh3_128: {
      const XXH128_hash_t x = XXH3_128bits(data.data(), data.size());
      // Canonical (big-endian) byte order: the same bytes on every host.
      XXH128_canonical_t c;
      XXH128_canonicalFromHash(&c, x);
      static_assert(sizeof(c.digest) == 16);
      std::memcpy(h.bytes.data(), c.digest, 16);
      return h;
    }
    case BlockHashAlgorithm::kSha256: {
      unsigned int len = 0;
      KVINFER_CHECK(
          EVP_Digest(data.data(), data.size(), h.bytes.data(), &len, EVP_sha256(), nullptr) == 1 &&
          len == 32);
      return h;
    }
  }
  return h;
}

BlockHash BlockHasher::Root(std::span<const std::string> extra_keys) const {
  std::vector<uint8_t> buf(kDomain.begin(), kDomain.end());
  PutU64(buf, extra_keys.size());
  for (const std::string& k : extra_keys) {
    PutU64(buf, k.size());
    buf.insert(buf.end(), k.begin(), k.end());
  }
  return Digest(buf);
}

BlockHash BlockHasher::Next(const BlockHash& parent, std::span<const int32_t> tokens) const {
  std::vector<uint8_t>& buf = scratch_;
  buf.clear();
  buf.reserve(parent.bytes.size() + 4 * tokens.size());
  buf.insert(buf.end(), parent.bytes.begin(), parent.bytes.end());
  for (int32_t t : tokens) PutU32(buf, static_cast<uint32_t>(t));
  return Digest(buf);
}

void BlockHasher::Chain(const BlockHash& root, std::span<const int32_t> tokens, int32_t block_size,
                        std::vector<BlockHash>& out) const {
  KVINFER_CHECK(block_size > 0);
  out.clear();
  const size_t n = tokens.size() / static_cast<size_t>(block_size);
  out.reserve(n);
  const BlockHash* parent = &root;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(Next(*parent, tokens.subspan(i * block_size, static_cast<size_t>(block_size))));
    parent = &out.back();
  }
}

}  // namespace kvinfer
