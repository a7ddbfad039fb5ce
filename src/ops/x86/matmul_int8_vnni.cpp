// The int8 MatMul's AVX-512 VNNI kernel (see matmul_int8_vnni.h).

#include "ops/x86/matmul_int8_vnni.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)

// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() operands as
// uninitialized (a false positive in its headers, inlined here).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace kvinfer::ops::int8::x86 {
namespace {

// ---------------------------------------------------------------------------
// AVX-512 VNNI: 16 rows per tile, lane i = row i.

// o[k] lane i = dword k of the 16 bytes at p + i * rb (i < 16, k < 4). z[j]
// holds rows j, 4 + j, 8 + j, 12 + j in its 128-bit lanes; the 4 x 4 dword
// transpose within each 128-bit lane then puts row 4L + j in lane 4L + j.
KVINFER_TARGET_VNNI inline void Transpose16(const uint8_t* p, size_t rb, __m512i* o) {
  __m512i z[4];
  for (int j = 0; j < 4; ++j) {
    const uint8_t* pj = p + static_cast<size_t>(j) * rb;
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pj)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 4 * rb)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 8 * rb)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 12 * rb)), 3);
    z[j] = v;
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  o[0] = _mm512_unpacklo_epi64(t0, t2);
  o[1] = _mm512_unpackhi_epi64(t0, t2);
  o[2] = _mm512_unpacklo_epi64(t1, t3);
  o[3] = _mm512_unpackhi_epi64(t1, t3);
}

// One block of 16 rows, decoded: wc[c] lane i = the 4 codes of elements
// 4c..4c+3 of row i as u8 (Q4: nibbles; Q8_0: c + 128), dw / mw the scales.
struct TileVnni {
  __m512i wc[8];
  __m512 dw;
  __m512 mw;
};

template <DType kType>
KVINFER_TARGET_VNNI inline void DecodeVnni(const uint8_t* base, size_t rb, __m512i offs, size_t b,
                                           TileVnni* out) {
  using L = Blk<kType>;
  const uint8_t* blk = base + b * L::kBytes;
  const __m512i hdr = _mm512_i32gather_epi32(offs, blk, 1);
  out->dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hdr));
  if constexpr (L::kMin)
    out->mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(hdr, 16)));
  if constexpr (L::kNibbles) {
    __m512i o[4];
    Transpose16(blk + L::kQs, rb, o);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      out->wc[k] = _mm512_and_si512(o[k], m4);
      out->wc[4 + k] = _mm512_and_si512(_mm512_srli_epi16(o[k], 4), m4);
    }
  } else {
    Transpose16(blk + L::kQs, rb, out->wc);
    Transpose16(blk + L::kQs + 16, rb, out->wc + 4);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm512_xor_si512(out->wc[k], flip);
  }
}

// The same TileVnni from a packed tile: plain aligned loads, no transpose.
template <DType kType>
KVINFER_TARGET_VNNI inline void DecodePacked(const uint8_t* tile, const PackedLayout& l, size_t b,
                                             TileVnni* out) {
  const __m512i* codes = reinterpret_cast<const __m512i*>(tile + b * l.code_bytes);
  out->dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(tile + l.scales + b * 32)));
  if constexpr (Blk<kType>::kMin) {
    out->mw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(tile + l.mins + b * 32)));
  }
  if constexpr (Blk<kType>::kNibbles) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      const __m512i o = _mm512_load_si512(codes + k);
      out->wc[k] = _mm512_and_si512(o, m4);
      out->wc[4 + k] = _mm512_and_si512(_mm512_srli_epi16(o, 4), m4);
    }
  } else {
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm512_load_si512(codes + k);
  }
}

// Where a kernel call finds its 16-row tile's weights: rows in GGML layout
// at `base`, rb bytes apart (decoded here, block by block); the tile already
// decoded into `pre` ([blocks] TileVnni); or a packed tile at `base`.
enum class Src { kRows, kPre, kPacked };

// Tokens [t0, t0 + T) against one 16-row tile; y points at column r0 of
// token 0's output row (ldy apart).
template <DType kType, int T, Src kSrc>
KVINFER_TARGET_VNNI void TokensVnni(const uint8_t* base, size_t rb, __m512i offs,
                                    const PackedLayout& layout, const TileVnni* pre, const Acts& a,
                                    size_t t0, float* y, size_t ldy, __mmask16 store_mask) {
  constexpr bool kBias = kType != DType::kQ4_1;
  // Streaming GGML rows reads 16 rows at once; the next tile (the next
  // 16 * rb bytes) is prefetched evenly over this tile's blocks,
  // lines_per_block lines each. A packed tile is one sequential stream,
  // which the hardware prefetcher follows by itself.
  const size_t lines_per_block = (16 * rb / 64 + a.blocks - 1) / a.blocks;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (size_t b = 0; b < a.blocks; ++b) {
    TileVnni local;
    const TileVnni* tile = &local;
    if constexpr (kSrc == Src::kPre) {
      tile = pre + b;
    } else if constexpr (kSrc == Src::kPacked) {
      DecodePacked<kType>(base, layout, b, &local);
    } else {
      const char* next = reinterpret_cast<const char*>(base + 16 * rb + b * lines_per_block * 64);
      for (size_t l = 0; l < lines_per_block; ++l) _mm_prefetch(next + l * 64, _MM_HINT_T0);
      DecodeVnni<kType>(base, rb, offs, b, &local);
    }
    for (int t = 0; t < T; ++t) {
      const size_t tb = (t0 + t) * a.blocks + b;
      const int8_t* xq = a.q + (t0 + t) * a.cols + b * kBlock;
      __m512i ia = kBias ? _mm512_set1_epi32(a.bias[tb]) : _mm512_setzero_si512();
      if constexpr (T <= 2) {
        // Few tokens: two dependency chains (exact integer sums either way).
        __m512i ib = _mm512_setzero_si512();
        for (int c = 0; c < 8; c += 2) {
          ia = _mm512_dpbusd_epi32(ia, tile->wc[c], _mm512_set1_epi32(Load32(xq + 4 * c)));
          ib = _mm512_dpbusd_epi32(ib, tile->wc[c + 1], _mm512_set1_epi32(Load32(xq + 4 * c + 4)));
        }
        ia = _mm512_add_epi32(ia, ib);
      } else {
        for (int c = 0; c < 8; ++c) {
          ia = _mm512_dpbusd_epi32(ia, tile->wc[c], _mm512_set1_epi32(Load32(xq + 4 * c)));
        }
      }
      const __m512 scale = _mm512_mul_ps(tile->dw, _mm512_set1_ps(a.d[tb]));
      acc[t] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(ia), acc[t]);
      if constexpr (Blk<kType>::kMin) {
        acc[t] = _mm512_fmadd_ps(tile->mw, _mm512_set1_ps(a.s[tb]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, store_mask, acc[t]);
}

constexpr int kTokTileVnni = 8;

template <DType kType, Src kSrc>
KVINFER_TARGET_VNNI void TokenTileVnni(int count, const uint8_t* base, size_t rb, __m512i offs,
                                       const PackedLayout& l, const TileVnni* pre, const Acts& a,
                                       size_t t0, float* y, size_t ldy, __mmask16 mask) {
  switch (count) {
    case 1:
      return TokensVnni<kType, 1, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 2:
      return TokensVnni<kType, 2, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 3:
      return TokensVnni<kType, 3, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 4:
      return TokensVnni<kType, 4, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 5:
      return TokensVnni<kType, 5, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 6:
      return TokensVnni<kType, 6, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    case 7:
      return TokensVnni<kType, 7, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
    default:
      return TokensVnni<kType, 8, kSrc>(base, rb, offs, l, pre, a, t0, y, ldy, mask);
  }
}

template <DType kType>
KVINFER_TARGET_VNNI void RowsVnni(const WeightView& w, const Acts& a, int64_t n64, float* y,
                                  int64_t r_begin, int64_t r_end, MatMulScratch& scratch) {
  const size_t n = static_cast<size_t>(n64);
  const size_t rb = w.row_bytes;
  const size_t ldy = static_cast<size_t>(w.rows);
  const __m512i offs =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int32_t>(rb)));
  const PackedLayout layout = LayoutOf(kType, a.blocks);
  const bool packed = w.packed != nullptr;
  KVINFER_CHECK(!packed || r_begin % 16 == 0);
  std::vector<uint8_t>& pad = scratch.tile_pad;
  TileVnni* pre = n > static_cast<size_t>(kTokTileVnni)
                      ? AlignedScratch<TileVnni>(scratch.tile_decoded, a.blocks)
                      : nullptr;
  for (int64_t r0 = r_begin; r0 < r_end; r0 += 16) {
    int valid = 0;
    const uint8_t* base = nullptr;
    if (packed) {
      valid = static_cast<int>(std::min<int64_t>(16, r_end - r0));
      base = static_cast<const uint8_t*>(w.packed) + static_cast<size_t>(r0 / 16) * layout.tile_bytes;
    } else {
      base = TileBase(w, r0, r_end, 16, pad, &valid);
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1u);
    float* yr = y + r0;
    if (n <= static_cast<size_t>(kTokTileVnni)) {
      if (packed) {
        TokenTileVnni<kType, Src::kPacked>(static_cast<int>(n), base, rb, offs, layout, nullptr, a,
                                           0, yr, ldy, mask);
      } else {
        TokenTileVnni<kType, Src::kRows>(static_cast<int>(n), base, rb, offs, layout, nullptr, a,
                                         0, yr, ldy, mask);
      }
      continue;
    }
    for (size_t b = 0; b < a.blocks; ++b) {
      if (packed) {
        DecodePacked<kType>(base, layout, b, &pre[b]);
      } else {
        DecodeVnni<kType>(base, rb, offs, b, &pre[b]);
      }
    }
    for (size_t t0 = 0; t0 < n; t0 += kTokTileVnni) {
      const int count = static_cast<int>(std::min<size_t>(kTokTileVnni, n - t0));
      TokenTileVnni<kType, Src::kPre>(count, base, rb, offs, layout, pre, a, t0, yr, ldy, mask);
    }
  }
}

}  // namespace

KVINFER_TARGET_VNNI void QuantizeBlockAvx512(const float* x, int8_t* q, float* d_out, float* s_out,
                                             int32_t* sum_out) {
  const __m512 v0 = _mm512_loadu_ps(x);
  const __m512 v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 idv = _mm512_set1_ps(id);
  const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
  const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
  const __m128i b0 = _mm512_cvtsepi32_epi8(q0);
  const __m128i b1 = _mm512_cvtsepi32_epi8(q1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), b0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), b1);
  // Sum of the saturated codes.
  const __m512i s = _mm512_add_epi32(_mm512_cvtepi8_epi32(b0), _mm512_cvtepi8_epi32(b1));
  const int32_t sum = _mm512_reduce_add_epi32(s);
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}

void MatMulRowsVnni(const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
                    int64_t r_end, MatMulScratch& scratch) {
  switch (w.type) {
    case DType::kQ4_0:
      return RowsVnni<DType::kQ4_0>(w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ4_1:
      return RowsVnni<DType::kQ4_1>(w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ8_0:
      return RowsVnni<DType::kQ8_0>(w, a, n, y, r_begin, r_end, scratch);
    default:
      KVINFER_CHECK_MSG(false, "int8 MatMul: unsupported weight type {}", DTypeName(w.type));
  }
}

}  // namespace kvinfer::ops::int8::x86

#endif  // defined(__x86_64__) || defined(__i386__)
