#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "cli.h"
#include "output.h"

namespace kvinfer::cli {
namespace {
constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
}  // namespace

std::string DefaultModelPath() {
  if (const char* env = std::getenv("KVINFER_MODEL"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path p = exe.parent_path().parent_path() / "models" / kDefaultModelFile;
    if (std::filesystem::exists(p)) return p.string();
  }
  return std::string(KVINFER_SOURCE_DIR) + "/models/" + kDefaultModelFile;
}

void Die(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "kvinfer: error: %s\n", what.c_str());
  std::exit(1);
}

void DieIf(const Status& st, const std::string& context) {
  if (!st.ok()) Die(context.empty() ? st.ToString() : context + ": " + st.ToString());
}

Model LoadModel(const std::string& path) {
  if (path.empty()) Die("the model path is empty");
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      Die(fmt::format("model file '{}' does not exist{}", path,
                      path.find(kDefaultModelFile) != std::string::npos
                          ? " (run ./scripts/setup.sh to fetch the default model)"
                          : ""));
    }
    Die(fmt::format("cannot open model '{}': {}", path, std::strerror(err)));
  }
  StatusOr<Model> m = Model::Load(path);
  DieIf(m.status(), "cannot load model");
  return std::move(m).value();
}

void WarnIfChatTemplateGuessed(const ModelInfo& info) {
  if (info.chat_template_recognised) return;
  std::fprintf(stderr,
               "kvinfer: warning: the model's chat template is not one kvinfer recognises; "
               "rendering turns as %s\n",
               info.chat_template.c_str());
}

void AddModelOption(CLI::App* cmd, std::string* model) {
  cmd->add_option("--model,-m", *model,
                  "Model: GGUF file, Hugging Face checkpoint directory (config.json + "
                  "safetensors) or llama2.c .bin; default: the installed "
                  "SmolLM2-135M-Instruct")
      ->check(CLI::Validator(
          [](const std::string& s) { return s.empty() ? std::string("the model path is empty") : ""; },
          "PATH"));
}

// A decimal integer in [0, 2^64): CLI11's own conversion wraps "-1" and
// clamps values past the range instead of refusing them.
CLI::Validator Uint64Validator() {
  return CLI::Validator(
      [](const std::string& s) -> std::string {
        uint64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ec != std::errc() || ptr != end) {
          return "must be an integer in [0, 18446744073709551615], got '" + s + "'";
        }
        return "";
      },
      "UINT64");
}

void AddThreadsOption(CLI::App* cmd, int* threads, ActivationPrecision* activations) {
  cmd->add_option("--threads,-t", *threads, "Threads (0 = all cores)")->check(CLI::Range(0, 1024));
  // Every command that runs a model has --threads, so it gets this too.
  cmd->add_flag_callback(
      "--f32-activations", [activations] { *activations = ActivationPrecision::kF32; },
      "Multiply Q4_0/Q4_1/Q8_0 weights by f32 activations (exact, slower) instead of "
      "activations quantized to int8 per 32-block (the default)");
}

// The K/V element types --kv-dtype accepts (ParseKvPrecision's names).
const std::vector<std::string> kKvDtypes = {"f32", "f16", "q8_0", "q4_0"};

void AddKvDtypeOption(CLI::App* cmd, std::string* dtype) {
  cmd->add_option("--kv-dtype", *dtype,
                  "Element type of cached K/V: f32 (exact), f16 (half the memory and attention "
                  "traffic), q8_0 (int8 with an f16 scale per 32 elements: 1.0625 bytes per "
                  "element) or q4_0 (4-bit codes with an f16 scale per 32 elements: 0.5625 "
                  "bytes per element)")
      ->check(CLI::IsMember(kKvDtypes))
      ->capture_default_str();
}

void AddKvDtypeListOption(CLI::App* cmd, std::vector<std::string>* dtypes) {
  cmd->add_option("--kv-dtype", *dtypes, "K/V element types to measure, in turn, comma-separated")
      ->check(CLI::IsMember(kKvDtypes))
      ->delimiter(',')
      ->capture_default_str();
}

void AddKvStrategyOption(CLI::App* cmd, std::string* kv) {
  cmd->add_option("--kv", *kv, "KV cache strategy")
      ->check(CLI::IsMember({"none", "contiguous", "paged"}))
      ->capture_default_str();
}

void AddPrefixCacheOptions(CLI::App* cmd, std::string* on_off, std::string* hash, bool* log) {
  cmd->add_option("--prefix-cache", *on_off,
                  "Prefix caching: full KV blocks are hashed and kept after a request finishes, "
                  "and a prompt that begins with cached blocks shares them instead of "
                  "recomputing them (paged; contiguous copies the longest cached prefix into "
                  "the new sequence's region; none has nothing to cache)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  cmd->add_option("--prefix-cache-hash", *hash,
                  "Hash naming a cached block: xxh3_128 (fast) or sha256 (collision-resistant, "
                  "for tenants that must not be able to match another's blocks)")
      ->check(CLI::IsMember({"xxh3_128", "sha256"}))
      ->capture_default_str();
  if (log != nullptr) {
    cmd->add_flag("--prefix-cache-log", *log,
                  "Print each request's cached tokens and the first token index where it left "
                  "the cached prefix to stderr");
  }
}

void ApplyPrefixCacheOptions(const std::string& on_off, const std::string& hash, bool log,
                             EngineOptions& o) {
  o.prefix_cache = on_off == "on";
  o.prefix_cache_hash = *ParsePrefixCacheHash(hash);
  o.prefix_cache_log = log;
}

void AddOutDirOption(CLI::App* cmd, std::string* out) {
  cmd->add_option("--out,-o", *out, "Folder for results.json and the figures")->required();
}

void RunFlags::Add(CLI::App* app, bool sampling) {
  AddModelOption(app, &model);
  AddKvStrategyOption(app, &kv);
  AddKvDtypeOption(app, &kv_dtype);
  AddThreadsOption(app, &threads, &activations);
  app->add_option("--max-seq-len", max_seq_len,
                  "Longest sequence a request may reach (0 = automatic; at most the model's context)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--block-size", block_size, "Tokens per KV block (paged)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app->add_option("--kv-memory-mib", kv_memory_mib, "KV pool size in MiB (0 = sized for the request)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--num-blocks", num_blocks, "KV pool size in blocks (overrides --kv-memory-mib)")
      ->check(CLI::NonNegativeNumber);
  AddPrefixCacheOptions(app, &prefix_cache, &prefix_cache_hash, &prefix_cache_log);
  if (!sampling) return;
  app->add_option("--temperature", temperature, "Sampling temperature (0 = greedy)")
      ->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  app->add_option("--top-k", top_k, "Keep the K most likely tokens (0 = off)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--top-p", top_p, "Nucleus sampling mass in (0, 1] (1 = off)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->capture_default_str();
  app->add_option("--seed", seed, "Random seed (sampling is deterministic per seed)")
      ->check(Uint64Validator())
      ->capture_default_str();
  app->add_flag("--ignore-eos", ignore_eos, "Keep generating past end-of-generation tokens");
}

std::string RunFlags::ModelPath() const { return model.empty() ? DefaultModelPath() : model; }

EngineOptions RunFlags::Engine(int max_seq_len_auto) const {
  EngineOptions o;
  o.kv.strategy = *ParseKvStrategy(kv);
  o.kv.precision = *ParseKvPrecision(kv_dtype);
  o.kv.block_size_tokens = block_size;
  // A budget below one byte is still a budget (which the engine refuses as
  // smaller than a block), not "automatic".
  o.kv.memory_bytes = kv_memory_mib > 0
                          ? std::max<int64_t>(1, static_cast<int64_t>(kv_memory_mib * 1048576.0))
                          : 0;
  o.kv.num_blocks = num_blocks;
  o.kv.max_seq_len = max_seq_len > 0 ? max_seq_len : max_seq_len_auto;
  o.num_threads = threads;
  o.activation_precision = activations;
  o.max_seqs = 1;
  ApplyPrefixCacheOptions(prefix_cache, prefix_cache_hash, prefix_cache_log, o);
  return o;
}

SamplingParams RunFlags::Sampling(int max_tokens) const {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  p.ignore_eos = ignore_eos;
  return p;
}

nlohmann::json KvStatsJson(const KvCacheStats& s) {
  nlohmann::json sequences = nlohmann::json::array();
  for (const KvSequenceStats& q : s.sequences) {
    sequences.push_back({{"request_id", q.request_id},
                         {"tokens_held", q.tokens_held},
                         {"num_blocks", q.num_blocks},
                         {"num_blocks_shared", q.num_blocks_shared},
                         {"capacity_tokens", q.capacity_tokens},
                         {"bytes_reserved", q.bytes_reserved},
                         {"bytes_used", q.bytes_used}});
  }
  return {{"strategy", s.strategy},
          {"sequences", sequences},
          {"block_size_tokens", s.block_size_tokens},
          {"num_blocks_total", s.num_blocks_total},
          {"num_blocks_used", s.num_blocks_used},
          {"num_blocks_free", s.num_blocks_free},
          {"num_sequences", s.num_sequences},
          {"tokens_held", s.tokens_held},
          {"capacity_tokens", s.capacity_tokens},
          {"bytes_per_token", s.bytes_per_token},
          {"bytes_total", s.bytes_total},
          {"bytes_reserved", s.bytes_reserved},
          {"bytes_used", s.bytes_used},
          {"peak_bytes_reserved", s.peak_bytes_reserved},
          {"usage_ratio", s.usage_ratio},
          {"bytes_logical", s.bytes_logical},
          {"bytes_saved_by_sharing", s.bytes_saved_by_sharing},
          {"num_blocks_shared", s.num_blocks_shared},
          {"num_cow_copies", s.num_cow_copies},
          {"prefix_cache", s.prefix_cache},
          {"prefix_cache_hash", s.prefix_cache_hash},
          {"prefix_cache_queries", s.prefix_cache_queries},
          {"prefix_cache_hits", s.prefix_cache_hits},
          {"prefix_cache_blocks_evicted", s.prefix_cache_blocks_evicted},
          {"num_blocks_cached", s.num_blocks_cached},
          {"num_blocks_cached_free", s.num_blocks_cached_free}};
}

nlohmann::json PrefixCacheJson(const Engine& engine) {
  const EngineStats st = engine.Stats();
  const KvCacheStats kv = engine.KvStats();
  return {{"mode", kv.prefix_cache},
          {"hash", kv.prefix_cache_hash},
          {"queries", st.prefix_cache_queries},
          {"hits", st.prefix_cache_hits},
          {"hit_rate", st.prefix_cache_queries > 0 ? static_cast<double>(st.prefix_cache_hits) /
                                                         static_cast<double>(st.prefix_cache_queries)
                                                   : 0.0},
          {"blocks_evicted", st.prefix_cache_blocks_evicted},
          {"num_blocks_cached", st.num_blocks_cached}};
}

RunResult RunToCompletion(Engine& engine, RequestId id, bool stream) {
  RunResult res;
  bool aborted = false;
  while (engine.HasWork()) {
    // A signal, or a stdout that no longer takes the text, ends the request
    // with what it has (finish reason "aborted").
    if (!aborted && (StopSignal() != 0 || res.output_lost)) aborted = engine.Abort(id);
    std::vector<RequestOutput> outs = engine.Step();
    KvCacheStats st = engine.KvStats();
    if (st.bytes_reserved >= res.peak_kv.bytes_reserved) res.peak_kv = st;
    for (RequestOutput& o : outs) {
      if (o.id != id) continue;
      res.text += o.text_delta;
      res.tokens.insert(res.tokens.end(), o.new_tokens.begin(), o.new_tokens.end());
      if (stream && !o.text_delta.empty() && !res.output_lost) {
        res.output_lost = !WriteStdout(o.text_delta);
      }
      if (o.finished) res.final = std::move(o);
    }
  }
  return res;
}

}  // namespace kvinfer::cli
