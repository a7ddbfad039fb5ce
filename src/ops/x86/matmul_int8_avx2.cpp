// The int8 MatMul's AVX2 kernel (see matmul_int8_avx2.h).

#include "ops/x86/matmul_int8_avx2.h"

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
// AVX2: 8 rows per tile, lane i = row i. The same transpose as Transpose16
// with two 128-bit lanes: z[j] holds rows j and 4 + j.

KVINFER_TARGET_AVX2 inline void Transpose8(const uint8_t* p, size_t rb, __m256i* o) {
  __m256i z[4];
  for (int j = 0; j < 4; ++j) {
    const uint8_t* pj = p + static_cast<size_t>(j) * rb;
    z[j] = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pj))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(pj + 4 * rb)), 1);
  }
  const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(z[0], z[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(z[2], z[3]);
  o[0] = _mm256_unpacklo_epi64(t0, t2);
  o[1] = _mm256_unpackhi_epi64(t0, t2);
  o[2] = _mm256_unpacklo_epi64(t1, t3);
  o[3] = _mm256_unpackhi_epi64(t1, t3);
}

// wc[c] lane i: the u8 operand of vpmaddubsw for elements 4c..4c+3 of row i
// (Q4: nibbles; Q8_0: |c|); ws (Q8_0 only): the signed codes, whose signs
// are moved onto the activations (|c| * sign(c) x: no int16 overflow).
struct TileAvx2 {
  __m256i wc[8];
  __m256i ws[8];
  __m256 dw;
  __m256 mw;
};

KVINFER_TARGET_AVX2 inline __m256 HalvesToFloats(__m256i hdr, int high) {
  // Bytes 0,1 (or 2,3) of each dword to the low 8 bytes of each 128-bit lane.
  const __m256i pick =
      high ? _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6,
                              7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1)
           : _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5,
                              8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(hdr, pick), 0x08);
  return _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
}

template <DType kType>
KVINFER_TARGET_AVX2 inline void DecodeAvx2(const uint8_t* base, size_t rb, __m256i offs, size_t b,
                                           TileAvx2* out) {
  using L = Blk<kType>;
  const uint8_t* blk = base + b * L::kBytes;
  const __m256i hdr = _mm256_i32gather_epi32(reinterpret_cast<const int*>(blk), offs, 1);
  out->dw = HalvesToFloats(hdr, 0);
  if constexpr (L::kMin) out->mw = HalvesToFloats(hdr, 1);
  if constexpr (L::kNibbles) {
    __m256i o[4];
    Transpose8(blk + L::kQs, rb, o);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < 4; ++k) {
      out->wc[k] = _mm256_and_si256(o[k], m4);
      out->wc[4 + k] = _mm256_and_si256(_mm256_srli_epi16(o[k], 4), m4);
    }
  } else {
    Transpose8(blk + L::kQs, rb, out->ws);
    Transpose8(blk + L::kQs + 16, rb, out->ws + 4);
    for (int k = 0; k < 8; ++k) out->wc[k] = _mm256_abs_epi8(out->ws[k]);
  }
}

template <DType kType, int T>
KVINFER_TARGET_AVX2 void TokensAvx2(const TileAvx2* pre, const Acts& a, size_t t0, float* y,
                                    size_t ldy, __m256i store_mask) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (size_t b = 0; b < a.blocks; ++b) {
    const TileAvx2& tile = pre[b];
    for (int t = 0; t < T; ++t) {
      const size_t tb = (t0 + t) * a.blocks + b;
      const int8_t* xq = a.q + (t0 + t) * a.cols + b * kBlock;
      __m256i ia;
      if constexpr (kType == DType::kQ8_0) {
        // |c| * (sign(c) x) <= 128 * 127 per product: pairs fit int16.
        ia = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i xv = _mm256_set1_epi32(Load32(xq + 4 * c));
          const __m256i p = _mm256_maddubs_epi16(tile.wc[c], _mm256_sign_epi8(xv, tile.ws[c]));
          ia = _mm256_add_epi32(ia, _mm256_madd_epi16(p, ones));
        }
      } else {
        // Nibbles: |8 chunks x 2 products| <= 16 * 15 * 127 < 2^15, so the
        // int16 sums are exact.
        __m256i s16 = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i xv = _mm256_set1_epi32(Load32(xq + 4 * c));
          s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(tile.wc[c], xv));
        }
        ia = _mm256_madd_epi16(s16, ones);
        if constexpr (kType == DType::kQ4_0)
          ia = _mm256_add_epi32(ia, _mm256_set1_epi32(a.bias[tb]));
      }
      const __m256 scale = _mm256_mul_ps(tile.dw, _mm256_set1_ps(a.d[tb]));
      acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(ia), acc[t]);
      if constexpr (Blk<kType>::kMin) {
        acc[t] = _mm256_fmadd_ps(tile.mw, _mm256_set1_ps(a.s[tb]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm256_maskstore_ps(y + (t0 + t) * ldy, store_mask, acc[t]);
}

constexpr int kTokTileAvx2 = 4;

template <DType kType>
KVINFER_TARGET_AVX2 void RowsAvx2(const WeightView& w, const Acts& a, int64_t n64, float* y,
                                  int64_t r_begin, int64_t r_end, MatMulScratch& scratch) {
  const size_t n = static_cast<size_t>(n64);
  const size_t rb = w.row_bytes;
  const size_t ldy = static_cast<size_t>(w.rows);
  const __m256i offs = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int32_t>(rb)));
  std::vector<uint8_t>& pad = scratch.tile_pad;
  TileAvx2* pre = AlignedScratch<TileAvx2>(scratch.tile_decoded, a.blocks);
  for (int64_t r0 = r_begin; r0 < r_end; r0 += 8) {
    int valid = 0;
    const uint8_t* base = TileBase(w, r0, r_end, 8, pad, &valid);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (size_t b = 0; b < a.blocks; ++b) DecodeAvx2<kType>(base, rb, offs, b, &pre[b]);
    for (size_t t0 = 0; t0 < n; t0 += kTokTileAvx2) {
      float* yr = y + r0;
      switch (std::min<size_t>(kTokTileAvx2, n - t0)) {
        case 1:
          TokensAvx2<kType, 1>(pre, a, t0, yr, ldy, mask);
          break;
        case 2:
          TokensAvx2<kType, 2>(pre, a, t0, yr, ldy, mask);
          break;
        case 3:
          TokensAvx2<kType, 3>(pre, a, t0, yr, ldy, mask);
          break;
        default:
          TokensAvx2<kType, 4>(pre, a, t0, yr, ldy, mask);
          break;
      }
    }
  }
}

}  // namespace

KVINFER_TARGET_AVX2 void QuantizeBlockAvx2(const float* x, int8_t* q, float* d_out, float* s_out,
                                           int32_t* sum_out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int c = 0; c < 4; ++c) {
    v[c] = _mm256_loadu_ps(x + 8 * c);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[c]));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float d = _mm_cvtss_f32(m4) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 idv = _mm256_set1_ps(id);
  __m256i qi[4];
  for (int c = 0; c < 4; ++c) qi[c] = _mm256_cvtps_epi32(_mm256_mul_ps(v[c], idv));
  // Saturating packs: 32 -> 16 -> 8 bits, then undo the in-lane interleave.
  const __m256i p16a = _mm256_packs_epi32(qi[0], qi[1]);
  const __m256i p16b = _mm256_packs_epi32(qi[2], qi[3]);
  const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
  // Sum of the (saturated) codes: sign-extend to 16 bits and add pairs.
  const __m256i lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(ordered));
  const __m256i hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(ordered, 1));
  const __m256i s32 = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), _mm256_set1_epi16(1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  const int32_t sum = _mm_cvtsi128_si32(s4);
  *d_out = d;
  *s_out = d * static_cast<float>(sum);
  *sum_out = sum;
}

void MatMulRowsAvx2(const WeightView& w, const Acts& a, int64_t n, float* y, int64_t r_begin,
                    int64_t r_end, MatMulScratch& scratch) {
  switch (w.type) {
    case DType::kQ4_0:
      return RowsAvx2<DType::kQ4_0>(w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ4_1:
      return RowsAvx2<DType::kQ4_1>(w, a, n, y, r_begin, r_end, scratch);
    case DType::kQ8_0:
      return RowsAvx2<DType::kQ8_0>(w, a, n, y, r_begin, r_end, scratch);
    default:
      KVINFER_CHECK_MSG(false, "int8 MatMul: unsupported weight type {}", DTypeName(w.type));
  }
}

}  // namespace kvinfer::ops::int8::x86

#endif  // defined(__x86_64__) || defined(__i386__)
