// Token sampling: penalties, greedy, temperature, top-k, top-p, min-p,
// reproducible per seed; log-probabilities; stop-string filtering of text.
//
// Determinism: the generator is std::mt19937_64 (fully specified by the
// standard) and uniform floats are made from its bits here, not with
// std::uniform_real_distribution (whose algorithm is implementation-defined).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvinfer/kvinfer.h"

namespace kvinfer {

// Errors name the parameter and its valid range; Ok if all are valid.
Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks a token from logits[vocab]. `prompt` and `generated` are the
  // sequence's tokens so far, which the penalties look at (repetition: both;
  // presence and frequency: generated only). Greedy (temperature 0) returns
  // the lowest index among the maxima of the penalized logits.
  int32_t Sample(std::span<const float> logits, std::span<const int32_t> prompt = {},
                 std::span<const int32_t> generated = {});

  // logits[vocab] with the repetition, presence and frequency penalties
  // applied; `logits` itself when all are off.
  std::span<const float> Penalize(std::span<const float> logits, std::span<const int32_t> prompt,
                                  std::span<const int32_t> generated);

 private:
  double NextUniform();  // in [0, 1)

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch, reused
  std::vector<double> probs_;                          // scratch, reused
  std::vector<float> penalized_;                       // scratch, reused
  std::vector<int32_t> counts_;                        // [vocab], all 0 between calls
};

// The log-softmax of logits[vocab] (in double) at `token`, and the `top_n`
// largest with theirs (ties: lower id first).
TokenLogprob ComputeLogprob(std::span<const float> logits, int32_t token, int top_n);

// Cuts a request's streamed text at the first stop string. Text that could
// still be the beginning of a stop string is held back until the following
// text decides it.
class StopStringFilter {
 public:
  StopStringFilter(std::vector<std::string> stops, bool include_stop);

  // Appends generated text; returns the text that may be emitted now. Once
  // a stop string has appeared (matched()), returns the text before it (and
  // the stop string itself with include_stop), then nothing more.
  std::string Push(std::string_view text);
  // At the end of generation: the held-back text (empty after a match).
  std::string Flush();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  bool matched_ = false;
  std::string held_;
};

int32_t ArgMax(std::span<const float> logits);

}  // namespace kvinfer
