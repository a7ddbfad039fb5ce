// K/V row conversions (kv/kv_format.h). F32ToF16Row is compiled per SIMD
// target by Highway's foreach_target and chosen at run time; the q8_0 and
// q4_0 quantizers are scalar (one row per token and head).
#include "kv/kv_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kv/kv_format.cpp"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kvinfer::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

void F32ToF16RowImpl(const float* x, int64_t n64, uint16_t* out) {
  const size_t n = static_cast<size_t>(n64);
  size_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  // F16C's vcvtps2ph. (Highway's emulation on older targets drops the sign
  // of -0, so they take the scalar loop.)
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const size_t N = hn::Lanes(df);
  auto* o = reinterpret_cast<hwy::float16_t*>(out);
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh, o + i);
#endif
  for (; i < n; ++i) out[i] = F32ToF16(x[i]);
}

}  // namespace kvinfer::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvinfer {

HWY_EXPORT(F32ToF16RowImpl);

void F32ToF16Row(const float* x, int64_t n, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(F32ToF16RowImpl)(x, n, out);
}

void QuantizeKvQ8(const float* x, int n, int8_t* codes, uint16_t* scales) {
  for (int b0 = 0; b0 < n; b0 += kKvQ8Block) {
    const int end = std::min(n, b0 + kKvQ8Block);
    float amax = 0.0f;
    for (int i = b0; i < end; ++i) amax = std::max(amax, std::abs(x[i]));
    // Codes from the stored (f16-rounded) scale, so each element is off by
    // at most half a step of the scale it is read back with (+ a clamp when
    // the rounding shrank the scale, by at most 2^-11 of max|x|).
    const uint16_t d16 = F32ToF16(amax / 127.0f);
    const float d = F16ToF32(d16);
    for (int i = b0; i < end; ++i) {
      const float c = d > 0.0f ? std::nearbyint(x[i] / d) : 0.0f;
      codes[i] = static_cast<int8_t>(std::clamp(c, -127.0f, 127.0f));
    }
    scales[b0 / kKvQ8Block] = d16;
  }
}

void QuantizeKvQ4(const float* x, int n, uint8_t* packed, uint16_t* scales) {
  KVINFER_CHECK(n % 2 == 0);
  std::memset(packed, 0, static_cast<size_t>(n) / 2);
  for (int b0 = 0; b0 < n; b0 += kKvQ8Block) {
    const int end = std::min(n, b0 + kKvQ8Block);
    float xm = 0.0f;  // the element of largest magnitude, sign kept
    for (int i = b0; i < end; ++i) {
      if (std::abs(x[i]) > std::abs(xm)) xm = x[i];
    }
    // As q8_0: codes from the stored (f16-rounded) scale.
    const uint16_t d16 = F32ToF16(xm / -8.0f);
    const float d = F16ToF32(d16);
    scales[b0 / kKvQ8Block] = d16;
    for (int i = b0; i < end; ++i) {
      const float c = d != 0.0f ? std::clamp(std::nearbyint(x[i] / d), -8.0f, 7.0f) : 0.0f;
      const KvQ4Place at = KvQ4PlaceOf(n, i);
      packed[at.byte] |= static_cast<uint8_t>(static_cast<int>(c) + 8) << at.shift;
    }
  }
}

}  // namespace kvinfer
#endif  // HWY_ONCE
