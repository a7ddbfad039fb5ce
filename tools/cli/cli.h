// Shared pieces of the kvinfer command line. Each command lives in its own
// file and registers itself with Add<Name>Command; the CLI is a thin client
// of the public API in include/kvinfer/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"

namespace kvinfer::cli {

// $KVINFER_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf beside the
// build directory, else in the source tree.
std::string DefaultModelPath();

// Prints "kvinfer: error: <what>" to stderr and exits with status 1.
[[noreturn]] void Die(const std::string& what);
void DieIf(const Status& st, const std::string& context = "");

// Loads a model or dies with a message naming the file and the problem.
Model LoadModel(const std::string& path);

// Prints a one-line warning to stderr when the model's chat template is not
// one kvinfer recognises (turns are then rendered as ChatML, a guess).
void WarnIfChatTemplateGuessed(const ModelInfo& info);

// Options shared by every command that runs the model.
struct RunFlags {
  std::string model;
  std::string kv = "contiguous";
  std::string kv_dtype = "f32";
  int threads = 0;
  ActivationPrecision activations = ActivationPrecision::kInt8;
  int max_seq_len = 0;
  int block_size = 16;
  double kv_memory_mib = 0;
  int64_t num_blocks = 0;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string prefix_cache = "on";        // on|off (paged shares cached blocks)
  std::string prefix_cache_hash = "xxh3_128";
  bool prefix_cache_log = false;

  void Add(CLI::App* app, bool sampling);
  // The model path, or the default model when --model was omitted.
  std::string ModelPath() const;
  EngineOptions Engine(int max_seq_len_auto) const;
  SamplingParams Sampling(int max_tokens) const;
};

// The options every command that loads a model spells the same way.
void AddModelOption(CLI::App* cmd, std::string* model);       // --model,-m
void AddThreadsOption(CLI::App* cmd, int* threads,
                      ActivationPrecision* activations);  // --threads,-t, --f32-activations
void AddOutDirOption(CLI::App* cmd, std::string* out);        // --out,-o (required)
void AddKvDtypeOption(CLI::App* cmd, std::string* dtype);     // --kv-dtype f32|f16|q8_0|q4_0
// --kv-dtype as a comma-separated list of those types (bench context).
void AddKvDtypeListOption(CLI::App* cmd, std::vector<std::string>* dtypes);
void AddKvStrategyOption(CLI::App* cmd, std::string* kv);    // --kv none|contiguous|paged
// --prefix-cache on|off, --prefix-cache-hash xxh3_128|sha256 and, when
// `log` is given, --prefix-cache-log.
void AddPrefixCacheOptions(CLI::App* cmd, std::string* on_off, std::string* hash,
                           bool* log = nullptr);
// Applies those flags to engine options.
void ApplyPrefixCacheOptions(const std::string& on_off, const std::string& hash, bool log,
                             EngineOptions& o);

nlohmann::json KvStatsJson(const KvCacheStats& s);
// The engine's prefix-cache mode and counters now: {"mode", "hash",
// "queries", "hits", "hit_rate", "blocks_evicted", "num_blocks_cached"}.
nlohmann::json PrefixCacheJson(const Engine& engine);

// Drives the engine until it has no work, streaming `id`'s text to stdout
// when `stream`. Keeps the KV stats of the fullest step.
// Stops early (finish reason "aborted") on SIGINT/SIGTERM once
// InstallStopSignals() is in force, or when stdout stops taking the text.
struct RunResult {
  RequestOutput final;
  std::vector<int32_t> tokens;  // the request's sampled ids
  KvCacheStats peak_kv;
  std::string text;
  bool output_lost = false;  // stdout failed: part of the text was not written
};
RunResult RunToCompletion(Engine& engine, RequestId id, bool stream);

void AddGenerateCommand(CLI::App& app);
void AddChatCommand(CLI::App& app);
void AddInfoCommand(CLI::App& app);
void AddBatchCommand(CLI::App& app);
void AddKvSizeCommand(CLI::App& app);
void AddBenchCommand(CLI::App& app);
void AddServeCommand(CLI::App& app);

}  // namespace kvinfer::cli
