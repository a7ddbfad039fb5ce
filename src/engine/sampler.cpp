#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace kvinfer {
namespace {

constexpr int kMaxLogprobs = 20;

}  // namespace

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
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return bad(fmt::format("min_p must be in [0, 1] (0 = off), got {}", p.min_p));
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return bad(fmt::format("presence_penalty must be in [-2, 2], got {}", p.presence_penalty));
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return bad(fmt::format("frequency_penalty must be in [-2, 2], got {}", p.frequency_penalty));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return bad(fmt::format("repetition_penalty must be a finite number > 0 (1 = off), got {}",
                           p.repetition_penalty));
  }
  if (p.logprobs < 0 || p.logprobs > kMaxLogprobs) {
    return bad(fmt::format("logprobs must be in [0, {}], got {}", kMaxLogprobs, p.logprobs));
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) return bad(fmt::format("stop string {} is empty", i));
  }
  for (int32_t t : p.stop_token_ids) {
    if (t < 0) return bad(fmt::format("stop token id {} is negative", t));
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

std::span<const float> Sampler::Penalize(std::span<const float> logits,
                                         std::span<const int32_t> prompt,
                                         std::span<const int32_t> generated) {
  const bool repetition = params_.repetition_penalty != 1.0f;
  const bool additive = params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (!repetition && !additive) return logits;
  const int32_t vocab = static_cast<int32_t>(logits.size());
  penalized_.assign(logits.begin(), logits.end());
  counts_.resize(vocab, 0);
  auto in_vocab = [&](int32_t t) { return t >= 0 && t < vocab; };
  if (repetition) {
    // counts_ marks each distinct token once.
    const float rp = params_.repetition_penalty;
    for (std::span<const int32_t> part : {prompt, generated}) {
      for (int32_t t : part) {
        if (!in_vocab(t) || counts_[t] != 0) continue;
        counts_[t] = 1;
        float& l = penalized_[t];
        l = l > 0.0f ? l / rp : l * rp;
      }
    }
    for (std::span<const int32_t> part : {prompt, generated}) {
      for (int32_t t : part) {
        if (in_vocab(t)) counts_[t] = 0;
      }
    }
  }
  if (additive) {
    for (int32_t t : generated) {
      if (in_vocab(t)) ++counts_[t];
    }
    for (int32_t t : generated) {
      if (!in_vocab(t) || counts_[t] == 0) continue;
      penalized_[t] -= params_.frequency_penalty * static_cast<float>(counts_[t]) +
                       params_.presence_penalty;
      counts_[t] = 0;
    }
  }
  return penalized_;
}

int32_t Sampler::Sample(std::span<const float> raw_logits, std::span<const int32_t> prompt,
                        std::span<const int32_t> generated) {
  const std::span<const float> logits = Penalize(raw_logits, prompt, generated);
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
  // min-p: probs are relative to the most likely kept token (whose is 1).
  int32_t last = keep - 1;
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p;
    sum = 0;
    for (int32_t i = 0; i < keep; ++i) {
      if (probs[i] < threshold) {
        probs[i] = 0;
      } else {
        sum += probs[i];
        last = i;
      }
    }
  }
  const double r = NextUniform() * sum;
  double acc = 0;
  for (int32_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[last].second;
}

TokenLogprob ComputeLogprob(std::span<const float> logits, int32_t token, int top_n) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  double max_logit = logits[0];
  for (float l : logits) max_logit = std::max<double>(max_logit, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = max_logit + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(static_cast<double>(logits[token]) - log_z);
  const int32_t n = std::min<int32_t>(top_n, vocab);
  if (n > 0) {
    std::vector<int32_t> ids(vocab);
    for (int32_t i = 0; i < vocab; ++i) ids[i] = i;
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    out.top.reserve(n);
    for (int32_t i = 0; i < n; ++i) {
      out.top.emplace_back(ids[i], static_cast<float>(static_cast<double>(logits[ids[i]]) - log_z));
    }
  }
  return out;
}

StopStringFilter::StopStringFilter(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {}

std::string StopStringFilter::Push(std::string_view text) {
  if (matched_) return {};
  if (stops_.empty()) return std::string(text);
  held_ += text;
  // The earliest stop string in the held text (the longest at one position).
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    if (pos < best || (pos == best && s.size() > best_stop->size())) {
      best = pos;
      best_stop = &s;
    }
  }
  std::string out;
  if (best_stop != nullptr) {
    matched_ = true;
    out = held_.substr(0, best);
    if (include_stop_) out += *best_stop;
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string.
  // Everything before it can begin no stop string.
  size_t keep_from = held_.size();
  for (const std::string& s : stops_) {
    const size_t longest = std::min(s.size() - 1, held_.size());
    for (size_t len = longest; len > 0; --len) {
      const size_t from = held_.size() - len;
      if (from >= keep_from) break;
      if (held_.compare(from, len, s, 0, len) == 0) {
        keep_from = from;
        break;
      }
    }
  }
  out = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return out;
}

std::string StopStringFilter::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace kvinfer
