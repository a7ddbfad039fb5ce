#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace kvinfer {

Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); };
  if (p.max_tokens < 0) return bad(fmt::format("max_tokens must be >= 0, got {}", p.max_tokens));
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return bad(fmt::format("temperature must be a finite number >= 0, got {}", p.temperature));
  }
  if (p.top_k < 0) return bad(fmt::format("top_k must be >= 0 (0 = off), got {}", p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return bad(fmt::format("top_p must be in (0, 1], got {}", p.top_p));
  }
  return Status::Ok();
}

int32_t ArgMax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

double Sampler::NextUniform() {
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f) return ArgMax(logits);

  const int32_t vocab = static_cast<int32_t>(logits.size());
  candidates_.resize(vocab);
  for (int32_t i = 0; i < vocab; ++i) candidates_[i] = {logits[i], i};
  // Order by logit descending, ties by id ascending: a total order, so the
  // result does not depend on the sort's stability.
  auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  int32_t keep = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), before);
  } else if (params_.top_p < 1.0f) {
    std::sort(candidates_.begin(), candidates_.end(), before);  // the nucleus needs the order
  }
  // Otherwise the whole vocabulary is kept in id order: no sort per token.
  candidates_.resize(keep);

  // Softmax with temperature, in double.
  const double inv_t = 1.0 / params_.temperature;
  float max_logit = candidates_[0].first;
  for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
  probs_.resize(keep);
  std::vector<double>& probs = probs_;
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((candidates_[i].first - max_logit) * inv_t);
    sum += probs[i];
  }
  // Nucleus: the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double mass = 0;
    int32_t cut = keep;
    for (int32_t i = 0; i < keep; ++i) {
      mass += probs[i] / sum;
      if (mass >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0;
    for (int32_t i = 0; i < keep; ++i) sum += probs[i];
  }
  const double r = NextUniform() * sum;
  double acc = 0;
  for (int32_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace kvinfer
