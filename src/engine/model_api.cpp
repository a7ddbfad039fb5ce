// The public Model facade and the enum names of the public API.
#include "core/error.h"
#include "kvinfer/kvinfer.h"
#include "model/model_impl.h"

namespace kvinfer {

const char* Version() { return "0.1.0"; }

const char* KvStrategyName(KvStrategy s) {
  switch (s) {
    case KvStrategy::kNone: return "none";
    case KvStrategy::kContiguous: return "contiguous";
    case KvStrategy::kPaged: return "paged";
  }
  return "?";
}

std::optional<KvStrategy> ParseKvStrategy(std::string_view name) {
  for (KvStrategy s : {KvStrategy::kNone, KvStrategy::kContiguous, KvStrategy::kPaged}) {
    if (name == KvStrategyName(s)) return s;
  }
  return std::nullopt;
}

const char* KvPrecisionName(KvPrecision p) {
  switch (p) {
    case KvPrecision::kF32: return "f32";
    case KvPrecision::kF16: return "f16";
    case KvPrecision::kQ8_0: return "q8_0";
    case KvPrecision::kQ4_0: return "q4_0";
  }
  return "?";
}

std::optional<KvPrecision> ParseKvPrecision(std::string_view name) {
  for (KvPrecision p :
       {KvPrecision::kF32, KvPrecision::kF16, KvPrecision::kQ8_0, KvPrecision::kQ4_0}) {
    if (name == KvPrecisionName(p)) return p;
  }
  return std::nullopt;
}

const char* PrefixCacheHashName(PrefixCacheHash h) {
  switch (h) {
    case PrefixCacheHash::kXxh3_128: return "xxh3_128";
    case PrefixCacheHash::kSha256: return "sha256";
  }
  return "?";
}

std::optional<PrefixCacheHash> ParsePrefixCacheHash(std::string_view name) {
  for (PrefixCacheHash h : {PrefixCacheHash::kXxh3_128, PrefixCacheHash::kSha256}) {
    if (name == PrefixCacheHashName(h)) return h;
  }
  return std::nullopt;
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kContextFull: return "context_full";
    case FinishReason::kKvExhausted: return "kv_exhausted";
    case FinishReason::kAborted: return "aborted";
    case FinishReason::kError: return "error";
  }
  return "?";
}

double RequestTimings::prefill_tokens_per_s() const {
  const double n = static_cast<double>(prompt_tokens - cached_prompt_tokens);
  return prefill_ms > 0 ? n / (prefill_ms / 1000.0) : 0.0;
}

double RequestTimings::decode_tokens_per_s() const {
  return decode_ms > 0 && generated_tokens > 1
             ? static_cast<double>(generated_tokens - 1) / (decode_ms / 1000.0)
             : 0.0;
}

StatusOr<Model> Model::Load(const std::string& path) {
  std::shared_ptr<const ModelImpl> impl;
  Status st = CatchToStatus([&] { impl = ModelImpl::Load(path); });
  if (!st.ok()) return st;
  return Model(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info(); }

StatusOr<std::vector<int32_t>> Model::Tokenize(std::string_view text, bool add_special,
                                               bool parse_special) const {
  std::vector<int32_t> ids;
  Status st =
      CatchToStatus([&] { ids = impl_->tokenizer().Encode(text, add_special, parse_special); });
  if (!st.ok()) return st;
  return ids;
}

std::string Model::Detokenize(std::span<const int32_t> ids, bool render_special) const {
  std::string text;
  // Out-of-range ids are a caller error; render them as nothing.
  Status st = CatchToStatus([&] { text = impl_->tokenizer().Decode(ids, render_special); });
  return st.ok() ? text : std::string();
}

StatusOr<std::string> Model::ApplyChatTemplate(std::span<const ChatMessage> messages,
                                               bool add_generation_prompt) const {
  std::string text;
  Status st = CatchToStatus(
      [&] { text = impl_->chat_template().Render(messages, add_generation_prompt); });
  if (!st.ok()) return st;
  return text;
}

}  // namespace kvinfer
