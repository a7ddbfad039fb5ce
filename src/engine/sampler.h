// Token sampling: greedy, temperature, top-k, top-p, reproducible per seed.
//
// Determinism: the generator is std::mt19937_64 (fully specified by the
// standard) and uniform floats are made from its bits here, not with
// std::uniform_real_distribution (whose algorithm is implementation-defined).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "kvinfer/kvinfer.h"

namespace kvinfer {

// Errors name the parameter and its valid range; Ok if all are valid.
Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks a token from logits[vocab]. Greedy (temperature 0) returns the
  // lowest index among the maxima.
  int32_t Sample(std::span<const float> logits);

 private:
  double NextUniform();  // in [0, 1)

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch, reused
  std::vector<double> probs_;                          // scratch, reused
};

int32_t ArgMax(std::span<const float> logits);

}  // namespace kvinfer
