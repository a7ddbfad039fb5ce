// Which kernels run: the one place where ops reads the CPU's features.
//
// Two kinds of kernels exist.
// - Portable kernels, written once with Highway and compiled per SIMD target
//   (foreach_target: ops.cpp, matmul.cpp's f32 path, attention.cpp).
//   HWY_DYNAMIC_DISPATCH runs the best target this CPU supports
//   (hwy::GetChosenTarget; tests restrict it with
//   hwy::SetSupportedTargetsForTest).
// - x86-specific kernels (src/ops/x86/), written with the intrinsics of one
//   instruction set and compiled with that set's target attributes. Which
//   of them run is an Isa: the best this CPU runs (BestIsa), or one forced
//   through MatMulContext for tests and benchmarks (ChooseIsa). The
//   attention kernels of AVX-512 VNNI are called from the portable kernel's
//   AVX-512 targets only, when CpuRuns(Isa::kAvx512Vnni).
// Every kernel of every target computes its documented formula to the same
// bits, so the choice changes speed only (ops/matmul_int8.h, attention.h).
#pragma once

#include <optional>
#include <vector>

namespace kvinfer::ops {

// Instruction sets of the x86-specific kernels, lowest first; each includes
// every one before it. kScalar: none (portable C++ only).
//   kAvx2:       AVX2, FMA, F16C, BMI, BMI2 (as Highway's AVX2 target)
//   kAvx512:     + AVX-512 F, BW, VL, DQ
//   kAvx512Vnni: + AVX-512 VNNI
enum class Isa { kScalar, kAvx2, kAvx512, kAvx512Vnni };

const char* IsaName(Isa isa);

// Whether this CPU runs kernels of `isa` (cpuid, read once).
bool CpuRuns(Isa isa);

// The sets this CPU runs, kScalar first, best last.
std::vector<Isa> RunnableIsas();

// The best set this CPU runs.
Isa BestIsa();

// The set the x86-specific kernels of a call use: `forced` when set (it
// must be runnable: checked), else BestIsa().
Isa ChooseIsa(std::optional<Isa> forced);

}  // namespace kvinfer::ops
