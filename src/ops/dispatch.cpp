#include "ops/dispatch.h"

#include "core/error.h"

namespace kvinfer::ops {

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

namespace {

bool Detect(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi") &&
             __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      return Detect(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
    case Isa::kAvx512Vnni:
      return Detect(Isa::kAvx512) && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return isa == Isa::kScalar;
#endif
}

}  // namespace

bool CpuRuns(Isa isa) {
  // The CPU's features never change while the process runs.
  static const bool runs[] = {Detect(Isa::kScalar), Detect(Isa::kAvx2), Detect(Isa::kAvx512),
                              Detect(Isa::kAvx512Vnni)};
  const int i = static_cast<int>(isa);
  return i >= 0 && i < 4 && runs[i];
}

std::vector<Isa> RunnableIsas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni}) {
    if (CpuRuns(isa)) out.push_back(isa);
  }
  return out;
}

Isa BestIsa() {
  static const Isa best = RunnableIsas().back();
  return best;
}

Isa ChooseIsa(std::optional<Isa> forced) {
  if (!forced.has_value()) return BestIsa();
  KVINFER_CHECK_MSG(CpuRuns(*forced), "kernels of {} cannot run on this CPU", IsaName(*forced));
  return *forced;
}

}  // namespace kvinfer::ops
