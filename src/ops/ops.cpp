// Element-wise and reduction kernels (norms, activations, softmax, rope,
// dot/axpy), compiled per SIMD target by Highway's foreach_target and chosen
// at run time. MatMul and DequantizeRow live in matmul.cpp.
//
// Tails (n not a multiple of the vector width) of the map-style kernels go
// through a padded stack buffer so every element sees the same vector math.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/ops.cpp"
// clang-format off
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace kvinfer::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

const char* TargetNameImpl() { return hwy::TargetName(HWY_TARGET); }

// Largest lane count of any x86 target (AVX-512: 16 floats); the tail buffers
// below are this size.
constexpr size_t kMaxLanes = 16;
static_assert(hn::MaxLanes(DF()) <= kMaxLanes);

// Applies v = f(v, u) to out[0, n) where u comes from in[0, n) (in may be
// null for unary maps, then u is zero). out may alias in.
template <class F>
HWY_INLINE void Map(float* out, const float* in, size_t n, const F& f) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const VF u = in != nullptr ? hn::LoadU(df, in + i) : hn::Zero(df);
    hn::StoreU(f(df, hn::LoadU(df, out + i), u), df, out + i);
  }
  if (i < n) {
    alignas(64) float a[kMaxLanes] = {};
    alignas(64) float b[kMaxLanes] = {};
    std::memcpy(a, out + i, (n - i) * sizeof(float));
    if (in != nullptr) std::memcpy(b, in + i, (n - i) * sizeof(float));
    hn::Store(f(df, hn::Load(df, a), hn::Load(df, b)), df, a);
    std::memcpy(out + i, a, (n - i) * sizeof(float));
  }
}

float SumSquares(const float* x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VF a = hn::LoadU(df, x + i), b = hn::LoadU(df, x + i + N);
    s0 = hn::MulAdd(a, a, s0);
    s1 = hn::MulAdd(b, b, s1);
  }
  for (; i + N <= n; i += N) {
    const VF a = hn::LoadU(df, x + i);
    s0 = hn::MulAdd(a, a, s0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

float DotImpl(const float* a, const float* b, int64_t n64) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t n = static_cast<size_t>(n64);
  VF s0 = hn::Zero(df), s1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(df, a + i + N), hn::LoadU(df, b + i + N), s1);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), s0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyImpl(float a, const float* x, float* y, int64_t n) {
  const VF va = hn::Set(DF(), a);
  Map(y, x, static_cast<size_t>(n), [va](DF, VF yv, VF xv) { return hn::MulAdd(va, xv, yv); });
}

void AddImpl(float* y, const float* x, int64_t n) {
  Map(y, x, static_cast<size_t>(n), [](DF, VF yv, VF xv) { return hn::Add(yv, xv); });
}

// x * 0 is NaN exactly when x is NaN or +-Inf (and +-0 otherwise), so a
// block's sum of those products is NaN exactly when the block holds a
// non-finite value; only such a block is scanned element by element.
int64_t FindNonFiniteImpl(const float* x, int64_t n64) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const size_t n = static_cast<size_t>(n64);
  const VF zero = hn::Zero(df);
  constexpr size_t kBlock = 256;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t end = std::min(n, begin + kBlock);
    VF a0 = zero, a1 = zero;
    size_t i = begin;
    for (; i + 2 * N <= end; i += 2 * N) {
      a0 = hn::MulAdd(hn::LoadU(df, x + i), zero, a0);
      a1 = hn::MulAdd(hn::LoadU(df, x + i + N), zero, a1);
    }
    for (; i + N <= end; i += N) a0 = hn::MulAdd(hn::LoadU(df, x + i), zero, a0);
    const VF sum = hn::Add(a0, a1);
    bool bad = !hn::AllTrue(df, hn::Eq(sum, sum));
    for (; i < end; ++i) bad = bad || !std::isfinite(x[i]);
    if (!bad) continue;
    for (size_t j = begin; j < end; ++j) {
      if (!std::isfinite(x[j])) return static_cast<int64_t>(j);
    }
  }
  return -1;
}

void RmsNormImpl(const float* x, const float* weight, int64_t n64, float eps, float* out) {
  const size_t n = static_cast<size_t>(n64);
  const float mean = SumSquares(x, n) / static_cast<float>(n);
  const VF scale = hn::Set(DF(), 1.0f / std::sqrt(mean + eps));
  if (out != x) std::memmove(out, x, n * sizeof(float));
  Map(out, weight, n, [scale](DF, VF v, VF wv) { return hn::Mul(hn::Mul(v, scale), wv); });
}

void LayerNormImpl(const float* x, const float* weight, const float* bias, int64_t n64, float eps,
                   float* out) {
  const DF df;
  const size_t n = static_cast<size_t>(n64);
  // Two passes (mean, then centred squares) for accuracy when |mean| >> std.
  float sum = 0.0f;
  {
    const size_t N = hn::Lanes(df);
    VF s = hn::Zero(df);
    size_t i = 0;
    for (; i + N <= n; i += N) s = hn::Add(s, hn::LoadU(df, x + i));
    sum = hn::GetLane(hn::SumOfLanes(df, s));
    for (; i < n; ++i) sum += x[i];
  }
  const float mean = sum / static_cast<float>(n);
  if (out != x) std::memmove(out, x, n * sizeof(float));
  const VF vmean = hn::Set(df, mean);
  Map(out, nullptr, n, [vmean](DF, VF v, VF) { return hn::Sub(v, vmean); });
  const float var = SumSquares(out, n) / static_cast<float>(n);
  const VF scale = hn::Set(df, 1.0f / std::sqrt(var + eps));
  Map(out, weight, n, [scale](DF, VF v, VF wv) { return hn::Mul(hn::Mul(v, scale), wv); });
  if (bias != nullptr) AddImpl(out, bias, n64);
}

// exp(-v) clamped to exp(88) (< FLT_MAX), inside hwy's Exp valid range; the
// callers divide by 1 + it, so a huge value just yields ~0.
HWY_INLINE VF ExpNegClamped(DF df, VF v) {
  return hn::CallExp(df, hn::Min(hn::Neg(v), hn::Set(df, 88.0f)));
}

void SiluMulImpl(float* gate, const float* up, int64_t n) {
  const VF one = hn::Set(DF(), 1.0f);
  Map(gate, up, static_cast<size_t>(n), [one](DF df, VF g, VF u) {
    return hn::Mul(hn::Div(g, hn::Add(one, ExpNegClamped(df, g))), u);
  });
}

void GeluTanhImpl(float* x, int64_t n) {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const DF df;
  const VF k0 = hn::Set(df, 0.7978845608028654f);
  const VF k1 = hn::Set(df, 0.044715f);
  const VF half = hn::Set(df, 0.5f);
  const VF one = hn::Set(df, 1.0f);
  Map(x, nullptr, static_cast<size_t>(n), [=](DF d, VF v, VF) {
    const VF inner = hn::Mul(k0, hn::MulAdd(hn::Mul(k1, v), hn::Mul(v, v), v));
    return hn::Mul(hn::Mul(half, v), hn::Add(one, hn::CallTanh(d, inner)));
  });
}

void SoftmaxImpl(float* x, int64_t n64) {
  const DF df;
  const size_t n = static_cast<size_t>(n64);
  const size_t N = hn::Lanes(df);
  float max = -INFINITY;
  {
    VF m = hn::Set(df, -INFINITY);
    size_t i = 0;
    for (; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(df, x + i));
    max = hn::GetLane(hn::MaxOfLanes(df, m));
    for (; i < n; ++i) max = std::max(max, x[i]);
  }
  const VF vmax = hn::Set(df, max);
  Map(x, nullptr, n, [vmax](DF d, VF v, VF) { return hn::CallExp(d, hn::Sub(v, vmax)); });
  float sum = 0.0f;
  {
    VF s = hn::Zero(df);
    size_t i = 0;
    for (; i + N <= n; i += N) s = hn::Add(s, hn::LoadU(df, x + i));
    sum = hn::GetLane(hn::SumOfLanes(df, s));
    for (; i < n; ++i) sum += x[i];
  }
  const VF inv = hn::Set(df, 1.0f / sum);
  Map(x, nullptr, n, [inv](DF, VF v, VF) { return hn::Mul(v, inv); });
}

}  // namespace kvinfer::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvinfer::ops {

HWY_EXPORT(TargetNameImpl);
HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(AddImpl);
HWY_EXPORT(FindNonFiniteImpl);
HWY_EXPORT(RmsNormImpl);
HWY_EXPORT(LayerNormImpl);
HWY_EXPORT(SiluMulImpl);
HWY_EXPORT(GeluTanhImpl);
HWY_EXPORT(SoftmaxImpl);

const char* SimdTargetName() { return HWY_DYNAMIC_DISPATCH(TargetNameImpl)(); }

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  KVINFER_CHECK(n > 0);
  HWY_DYNAMIC_DISPATCH(RmsNormImpl)(x, weight, n, eps, out);
}

void LayerNorm(const float* x, const float* weight, const float* bias, int64_t n, float eps,
               float* out) {
  KVINFER_CHECK(n > 0);
  HWY_DYNAMIC_DISPATCH(LayerNormImpl)(x, weight, bias, n, eps, out);
}

void SiluMul(float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SiluMulImpl)(gate, up, n);
}

void GeluTanh(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(GeluTanhImpl)(x, n); }

void Add(float* y, const float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(AddImpl)(y, x, n); }

int64_t FindNonFinite(const float* x, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(FindNonFiniteImpl)(x, n);
}

void RopeTable(int32_t pos, int rope_dims, float theta_base, float* cs, float* sn) {
  KVINFER_CHECK_MSG(rope_dims % 2 == 0 && rope_dims > 0, "RopeTable: rope_dims {}", rope_dims);
  // The angle is computed in double (exactly as ref::RopeNorm) so large
  // positions keep their precision.
  for (int i = 0; i < rope_dims / 2; ++i) {
    const double angle =
        static_cast<double>(pos) *
        std::pow(static_cast<double>(theta_base), -2.0 * i / static_cast<double>(rope_dims));
    cs[i] = static_cast<float>(std::cos(angle));
    sn[i] = static_cast<float>(std::sin(angle));
  }
}

void RopeRotate(float* x, int num_heads, int head_dim, int rope_dims, const float* cs,
                const float* sn) {
  KVINFER_CHECK_MSG(rope_dims % 2 == 0 && rope_dims > 0 && rope_dims <= head_dim,
                    "RopeRotate: rope_dims {} (head_dim {})", rope_dims, head_dim);
  // Pairs are interleaved and head_dim is small (64); the scalar loop is a
  // negligible share of a token's time next to the matmuls.
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    for (int i = 0; i < rope_dims / 2; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cs[i] - b * sn[i];
      v[2 * i + 1] = a * sn[i] + b * cs[i];
    }
  }
}

void RopeNorm(float* x, int num_heads, int head_dim, int rope_dims, int32_t pos, float theta_base) {
  KVINFER_CHECK_MSG(rope_dims % 2 == 0 && rope_dims > 0 && rope_dims <= head_dim,
                    "RopeNorm: rope_dims {} (head_dim {})", rope_dims, head_dim);
  constexpr int kMaxPairs = 512;
  KVINFER_CHECK_MSG(rope_dims / 2 <= kMaxPairs, "RopeNorm: rope_dims {} too large", rope_dims);
  float cs[kMaxPairs];
  float sn[kMaxPairs];
  RopeTable(pos, rope_dims, theta_base, cs, sn);
  RopeRotate(x, num_heads, head_dim, rope_dims, cs, sn);
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  HWY_DYNAMIC_DISPATCH(SoftmaxImpl)(x, n);
}

float Dot(const float* a, const float* b, int64_t n) {
  return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n);
}

void Axpy(float a, const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyImpl)(a, x, y, n);
}

}  // namespace kvinfer::ops
#endif  // HWY_ONCE
