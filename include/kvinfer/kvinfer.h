// kvinfer public API.
//
//   kvinfer::StatusOr<kvinfer::Model> model = kvinfer::Model::Load("model.gguf");
//   auto engine = kvinfer::Engine::Create(*model, {.kv = {.strategy = kvinfer::KvStrategy::kContiguous}});
//   kvinfer::StatusOr<kvinfer::RequestId> id = (*engine)->AddRequest("Once upon a time", {.max_tokens = 64});
//   while ((*engine)->HasWork()) {
//     for (const kvinfer::RequestOutput& out : (*engine)->Step()) { /* out.text_delta ... */ }
//   }
//
// Nothing here throws; failures come back as Status. Engine is not
// thread-safe: one thread drives Step().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvinfer/status.h"

namespace kvinfer {

// ---------------------------------------------------------------- models

struct ModelInfo {
  std::string path;
  std::string format;             // "gguf", "hf" (checkpoint directory) or "llama2c"
  std::string architecture;       // "llama", "gpt2"
  std::string name;
  int n_layers = 0;
  int d_model = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int d_ff = 0;
  int vocab_size = 0;
  int context_length = 0;
  int rope_dims = 0;
  float rope_theta = 0;
  float norm_eps = 0;
  bool tied_output = false;
  int64_t num_parameters = 0;
  int64_t weight_bytes = 0;
  // Tensor type name -> number of tensors of that type, e.g. {"q4_1", 210}.
  std::vector<std::pair<std::string, int>> tensor_types;
  std::string tokenizer;          // "spm" or "bpe:<pre>"
  std::string chat_template;      // "chatml", "llama2", "llama3" or "none"
  // False when the model carries a chat template kvinfer does not recognise;
  // chat_template is then "chatml", a guess that may render turns wrongly.
  bool chat_template_recognised = true;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;
  // K+V bytes of one token over all layers for an f32 / f16 / q8_0 / q4_0
  // cache (q4_0: 0 when head_dim is odd, which it cannot store).
  int64_t kv_bytes_per_token_f32 = 0;
  int64_t kv_bytes_per_token_f16 = 0;
  int64_t kv_bytes_per_token_q8_0 = 0;
  int64_t kv_bytes_per_token_q4_0 = 0;
};

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

class ModelImpl;

// A loaded model: weights (memory-mapped), config, tokenizer, chat template.
// Cheap to copy (shared, immutable).
class Model {
 public:
  // Accepts a GGUF file, a Hugging Face checkpoint directory (config.json,
  // model.safetensors or a sharded index, and the tokenizer files; also
  // given as the path of one of those files), or a llama2.c checkpoint
  // (.bin, with tok<vocab>.bin or tokenizer.bin beside it). Errors name the
  // file and what is wrong.
  static StatusOr<Model> Load(const std::string& path);

  const ModelInfo& info() const;
  StatusOr<std::vector<int32_t>> Tokenize(std::string_view text, bool add_special = true,
                                          bool parse_special = false) const;
  std::string Detokenize(std::span<const int32_t> ids, bool render_special = false) const;
  // Renders a conversation with the model's chat template; with
  // add_generation_prompt it ends where the assistant's reply begins.
  StatusOr<std::string> ApplyChatTemplate(std::span<const ChatMessage> messages,
                                          bool add_generation_prompt = true) const;


 private:
  // Internal code reaches the implementation through ModelAccess
  // (src/engine/model_access.h); it is not part of the public API.
  friend struct ModelAccess;
  explicit Model(std::shared_ptr<const ModelImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const ModelImpl> impl_;
};

// ---------------------------------------------------------------- KV cache

enum class KvStrategy {
  kNone,        // recompute the whole sequence every step (the O(n^2) baseline)
  kContiguous,  // one region of max_seq_len tokens per sequence, reserved up front
  kPaged,       // small blocks from a shared pool, per-sequence block tables
};
const char* KvStrategyName(KvStrategy s);
std::optional<KvStrategy> ParseKvStrategy(std::string_view name);

// Element type of cached keys and values. f32 is exact (every strategy gives
// the same tokens); f16 halves the cache's memory and the bytes attention
// reads per token, at ~1e-3 relative rounding of each K/V element; q8_0
// (GGML's Q8_0 layout: int8 codes with one f16 scale per 32 elements of a
// head's vector) needs 1.0625 bytes per element, about a quarter of f32, at
// up to 1/254 of its block's max |element| of error per element; q4_0
// (GGML's Q4_0 rounding: 4-bit codes in [-8, 7] with one f16 scale per 32
// elements) needs 0.5625 bytes per element, about a seventh of f32, at up to
// 1/16 of its block's max |element| of error for almost every element, 1/8
// at worst (an even head_dim only).
enum class KvPrecision { kF32, kF16, kQ8_0, kQ4_0 };
const char* KvPrecisionName(KvPrecision p);
std::optional<KvPrecision> ParseKvPrecision(std::string_view name);

struct KvOptions {
  KvStrategy strategy = KvStrategy::kContiguous;
  KvPrecision precision = KvPrecision::kF32;
  // Paged block size. contiguous: block = max_seq_len; none: transient.
  int block_size_tokens = 16;
  // Pool size, by bytes (0 = unset) or by blocks (0 = unset). With neither,
  // the pool holds max_seqs sequences of max_seq_len tokens.
  int64_t memory_bytes = 0;
  int64_t num_blocks = 0;
  // Longest sequence (prompt + generated) a request may reach; 0 = the
  // model's context length.
  int max_seq_len = 0;
  // Touch the whole pool when the engine is created, so it is resident from
  // the start (a server's pool). Otherwise pages become resident as blocks
  // are first written: memory follows the tokens cached, but the first use
  // of each block pays its page faults.
  bool resident = false;
};

// One sequence's share of the cache.
struct KvSequenceStats {
  int64_t request_id = -1;  // -1: held by an idle session
  int64_t tokens_held = 0;
  int64_t num_blocks = 0;           // blocks in its block table
  int64_t num_blocks_shared = 0;    // of those, shared with another sequence
  int64_t capacity_tokens = 0;
  int64_t bytes_reserved = 0;       // its blocks (shared ones counted in full)
  int64_t bytes_used = 0;           // its tokens
};

struct KvCacheStats {
  std::string strategy;
  std::string precision;            // "f32", "f16", "q8_0" or "q4_0" (KvPrecisionName)
  int block_size_tokens = 0;
  int64_t num_blocks_total = 0;
  int64_t num_blocks_used = 0;
  int64_t num_blocks_free = 0;
  int64_t num_sequences = 0;
  int64_t tokens_held = 0;          // tokens whose K/V are stored
  int64_t capacity_tokens = 0;      // tokens the used blocks can hold
  int64_t bytes_per_token = 0;
  int64_t bytes_total = 0;          // the whole pool's storage
  int64_t bytes_reserved = 0;       // blocks in use
  int64_t bytes_used = 0;           // tokens held
  int64_t peak_bytes_reserved = 0;
  double usage_ratio = 0;           // tokens_held / capacity_tokens
  // Sharing (forks with copy-on-write): the bytes all block tables address,
  // what sharing saves against giving every sequence its own copy, the
  // blocks with more than one holder, and the copies made on first write.
  int64_t bytes_logical = 0;
  int64_t bytes_saved_by_sharing = 0;
  int64_t num_blocks_shared = 0;
  int64_t num_cow_copies = 0;
  // Prefix cache (EngineOptions::prefix_cache). prefix_cache: "shared"
  // (paged: hits share the cached blocks), "copied" (contiguous: a hit's
  // K/V is copied into the new sequence's region), "off" (disabled, or
  // `none`).
  // prefix_cache_hash: "xxh3_128" or "sha256". Queries and hits count
  // tokens (every admission looks up its tokens; hits are the leading ones
  // found cached); blocks evicted are cached blocks whose contents were
  // dropped to make room. num_blocks_cached: blocks whose contents the
  // cache indexes, held by a sequence or free (contiguous: regions holding
  // a finished sequence); num_blocks_cached_free: of those, free
  // (evictable; counted in num_blocks_free too).
  std::string prefix_cache = "off";
  std::string prefix_cache_hash;
  int64_t prefix_cache_queries = 0;
  int64_t prefix_cache_hits = 0;
  int64_t prefix_cache_blocks_evicted = 0;
  int64_t num_blocks_cached = 0;
  int64_t num_blocks_cached_free = 0;
  std::vector<KvSequenceStats> sequences;
};

// ---------------------------------------------------------------- engine

// What the matrix products do with the activations that multiply Q4_0 /
// Q4_1 / Q8_0 weights. kInt8 (the default) rounds them per token and per
// 32-element block to int8 with an f32 scale and takes integer dot
// products (about the precision of llama.cpp's Q8_0 / Q8_1 activations,
// and faster); kF32 keeps them f32 (the exact path, what the reference
// implementations compute). Other weight types always use f32 activations,
// and so does kInt8 on CPUs without AVX2 (where only a slow scalar int8
// kernel exists). Each engine has its own; engines in one process may differ.
enum class ActivationPrecision { kInt8, kF32 };

// The hash that names a cached block's contents (with everything before
// it). XXH3-128 is fast; SHA-256 resists deliberate collisions, for tenants
// who must not be able to make their blocks match another's.
enum class PrefixCacheHash { kXxh3_128, kSha256 };
const char* PrefixCacheHashName(PrefixCacheHash h);  // "xxh3_128", "sha256"
std::optional<PrefixCacheHash> ParsePrefixCacheHash(std::string_view name);

struct EngineOptions {
  KvOptions kv;
  int num_threads = 0;         // 0 = all hardware threads
  int max_seqs = 16;           // running sequences at most
  int max_batch_tokens = 2048; // tokens in one forward step at most
  ActivationPrecision activation_precision = ActivationPrecision::kInt8;
  // Prefix caching. `paged`: full blocks are hashed as they fill (their
  // tokens, everything before them, the model, KV element type, block size,
  // activation precision and the request's cache_salt); a finished
  // request's hashed blocks stay in the pool as evictable, and a new
  // request whose tokens begin with cached blocks shares them instead of
  // computing them. Requests that arrive together sharing an uncached
  // prefix compute it once: one runs first, the others then hit.
  // `contiguous`: a finished sequence's region stays cached with its
  // tokens, and a new request copies the longest common prefix (token
  // granular, same model, KV type and cache_salt) into its own region.
  // `none` has nothing to cache. Either way at least the last prompt token
  // is computed, and outputs are identical with the cache on or off.
  bool prefix_cache = true;
  PrefixCacheHash prefix_cache_hash = PrefixCacheHash::kXxh3_128;
  // Debugging: print to stderr, for every admitted request, how many of its
  // tokens were cached and the first token index where it left the cached
  // prefix.
  bool prefix_cache_log = false;
};

struct SamplingParams {
  int max_tokens = 128;
  float temperature = 0.0f;    // 0 = greedy
  int top_k = 0;               // 0 = off
  float top_p = 1.0f;          // 1 = off
  uint64_t seed = 0;
  bool ignore_eos = false;     // keep generating past end-of-generation tokens
  // Independent samples of the same prompt. They share the prompt's KV
  // blocks (copy-on-write) and are reported as one request: every output
  // carries the request's id and its sample_index in [0, n); sample i uses
  // seed + i.
  int n = 1;

  // Stop strings: generation ends (kStop) when the generated text contains
  // one; the text from the stop string on is not returned (unless
  // include_stop_str_in_output). A stop string may span several tokens;
  // while streaming, text that could still begin a stop string is held back
  // until it is decided. Each must be non-empty.
  std::vector<std::string> stop;
  // Token ids that end generation (kStop) when sampled, also with
  // ignore_eos. Their text is not returned (unless include_stop_str_in_output).
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;

  // Per generated token: the sampled token's log-probability and the
  // `logprobs` most likely tokens with theirs (0 = none, at most 20). They
  // are the log-softmax of the model's raw logits, before penalties,
  // temperature, top-k/top-p/min-p (vLLM's default), computed in double.
  int logprobs = 0;

  // OpenAI's penalties over the tokens generated so far, applied to the
  // logits: logit -= frequency_penalty * count + presence_penalty * (count > 0).
  // Each in [-2, 2]; 0 = off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // The CTRL rule over prompt and generated tokens: a positive logit of a
  // token seen is divided by it, a negative one multiplied. > 0; 1 = off.
  // Applied before the presence/frequency penalties.
  float repetition_penalty = 1.0f;
  // Keeps tokens whose probability (after temperature) is at least min_p
  // times the most likely token's. In [0, 1]; 0 = off. Applied after top-k
  // and top-p; no effect on greedy decoding.
  float min_p = 0.0f;
};

using RequestId = int64_t;
using SessionId = int64_t;

struct RequestOptions {
  // Tokenize the prompt with special-token parsing ("<|im_start|>" -> one token).
  bool parse_special = false;
  // Prepend BOS as the vocabulary asks.
  bool add_special = true;
  // Continue a session (one request in flight at a time). With the prefix
  // cache on, a session is a plain client of it: the finished turn's full
  // blocks (prompt and reply) stay cached and the next turn's prompt hits
  // them like any request's. With it off, the session keeps its sequence
  // and the next prompt reuses its longest common prefix with the tokens
  // already cached (only the rest is prefilled).
  std::optional<SessionId> session;
  // A caller's name for the request (e.g. "chatcmpl-abc"), returned in every
  // RequestOutput; the engine's numeric RequestId identifies it internally.
  std::string request_id;
  // Prefix-cache isolation: requests with different salts share no cached
  // block (the salt is hashed into every block's hash). "" = no salt.
  std::string cache_salt;
};

// kError: a failure that belonged to this request alone (e.g. memory for
// its KV could not be allocated); RequestOutput::error says what.
enum class FinishReason { kNone, kStop, kLength, kContextFull, kKvExhausted, kAborted, kError };
const char* FinishReasonName(FinishReason r);

struct RequestTimings {
  double queue_ms = 0;            // added -> first scheduled
  double ttft_ms = 0;             // added -> first token sampled
  double prefill_ms = 0;          // time in steps that prefilled this request
  double decode_ms = 0;           // time in steps after the first token
  double total_ms = 0;            // added -> finished
  int64_t prompt_tokens = 0;
  // Prompt tokens whose K/V were reused (prefix cache or session) when the
  // request was first admitted.
  int64_t cached_prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;  // tokens after the first / decode_ms
};

// One generated token's log-probability and the most likely alternatives
// (SamplingParams::logprobs of them, most likely first, ties by lower id).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

// What one sample of a request produced in one step. A request with n
// samples yields outputs for sample_index 0..n-1, all with the same id.
struct RequestOutput {
  RequestId id = 0;
  std::string request_id;           // RequestOptions::request_id
  int sample_index = 0;             // in [0, SamplingParams::n)
  std::vector<int32_t> new_tokens;  // sampled this step
  // Their text (complete UTF-8 characters only; text that may begin a stop
  // string is held back until decided).
  std::string text_delta;
  std::vector<TokenLogprob> logprobs;  // one per new token when SamplingParams::logprobs > 0
  bool finished = false;               // this sample is finished
  FinishReason finish_reason = FinishReason::kNone;  // this sample's
  std::string error;                   // finish_reason kError: what failed
  // Every sample of the request is finished: the request's last output.
  bool request_finished = false;
  // Prompt tokens whose K/V came from the cache (prefix cache or session)
  // rather than being computed for this request; on every output of it.
  int64_t num_cached_tokens = 0;
  RequestTimings timings;
};

// Scheduler counters since the engine was created.
struct EngineStats {
  int64_t num_steps = 0;
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t peak_running = 0;           // most sequences in one step
  int64_t num_preemptions = 0;        // running requests whose blocks were freed for others
  int64_t tokens_recomputed = 0;      // computed tokens whose K/V preemptions dropped (to compute again)
  int64_t num_session_evictions = 0;  // idle sessions whose cached tokens were dropped
  int64_t tokens_computed = 0;        // tokens through the forward pass (prefill + decode + recompute)
  // Prefix cache (see KvCacheStats): tokens looked up and found cached,
  // cached blocks evicted, blocks the cache indexes now.
  int64_t prefix_cache_queries = 0;
  int64_t prefix_cache_hits = 0;
  int64_t prefix_cache_blocks_evicted = 0;
  int64_t num_blocks_cached = 0;
};

class EngineImpl;

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> Create(const Model& model, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Errors: an empty prompt, a prompt that does not fit in max_seq_len
  // (kOutOfRange), bad sampling parameters (kInvalidArgument). With
  // params.n > 1 every sample's outputs carry the returned id.
  //
  // Scheduling: requests run in arrival order, at most max_seqs at once and
  // max_batch_tokens per step (long prompts are prefilled in chunks). A
  // request is admitted when its prompt's blocks fit. When a running
  // sequence needs a block and none is free, idle sessions' caches are
  // dropped first, then the most recently admitted request is preempted:
  // its blocks are freed and it is recomputed later, producing exactly the
  // tokens it would have produced anyway. A request that cannot fit even
  // alone finishes with kKvExhausted.
  StatusOr<RequestId> AddRequest(std::string_view prompt, const SamplingParams& params,
                                 const RequestOptions& options = {});
  StatusOr<RequestId> AddRequestTokens(std::vector<int32_t> prompt_tokens,
                                       const SamplingParams& params,
                                       const RequestOptions& options = {});
  // Runs one forward step over all running requests; returns what each
  // produced. Finished requests appear once with finished = true. A failure
  // that belongs to one request (its KV growth, its sampling) finishes it
  // with kError and a message; the others go on.
  std::vector<RequestOutput> Step();
  // True while requests wait or run, or finished ones (e.g. aborted) have
  // outputs Step() has not returned yet.
  bool HasWork() const;
  // Finishes a request (all its samples) with kAborted and frees its
  // blocks; false if unknown or already finished.
  bool Abort(RequestId id);

  SessionId CreateSession();
  // Frees a session's cached tokens.
  void EndSession(SessionId id);

  KvCacheStats KvStats() const;
  EngineStats Stats() const;
  const EngineOptions& options() const;

 private:
  explicit Engine(std::unique_ptr<EngineImpl> impl);
  // Test-only fault injection (declared in src/engine/engine_testing.h).
  friend void FailBlockAllocationForTest(Engine& engine, RequestId id, int sample_index, int nth);
  std::unique_ptr<EngineImpl> impl_;
};

// Library version, "0.1.0".
const char* Version();

}  // namespace kvinfer
