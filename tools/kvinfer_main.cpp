// kvinfer: the command-line front end, a thin client of the public API.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvinfer/kvinfer.h"

namespace {

using kvinfer::Engine;
using kvinfer::Model;
using kvinfer::Status;
using json = nlohmann::json;

constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

// Where the default model lives when --model is omitted: $KVINFER_MODEL, then
// models/ next to the build directory, then the source tree's models/.
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

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kvinfer: error: %s\n", what.c_str());
  std::exit(1);
}

void DieIf(const Status& st, const std::string& context = "") {
  if (!st.ok()) Die(context.empty() ? st.ToString() : context + ": " + st.ToString());
}

Model LoadModel(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    Die(fmt::format("model file '{}' does not exist{}", path,
                    path.find(kDefaultModelFile) != std::string::npos
                        ? " (run ./scripts/setup.sh to fetch the default model)"
                        : ""));
  }
  kvinfer::StatusOr<Model> m = Model::Load(path);
  DieIf(m.status(), "cannot load model");
  return std::move(m).value();
}

// Options shared by every command that runs the model.
struct RunFlags {
  std::string model;
  std::string kv = "contiguous";
  int threads = 0;
  int max_seq_len = 0;
  int block_size = 16;
  double kv_memory_mib = 0;
  int64_t num_blocks = 0;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;

  void Add(CLI::App* app, bool sampling) {
    app->add_option("--model,-m", model, "Model file (GGUF); default: the installed SmolLM2-135M-Instruct");
    app->add_option("--kv", kv, "KV cache strategy")
        ->check(CLI::IsMember({"none", "contiguous", "paged"}))
        ->capture_default_str();
    app->add_option("--threads,-t", threads, "Threads (0 = all cores)")->check(CLI::Range(0, 1024));
    app->add_option("--max-seq-len", max_seq_len,
                    "Longest sequence a request may reach (0 = automatic; capped at the model's context)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--block-size", block_size, "Tokens per KV block (paged)")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    app->add_option("--kv-memory-mib", kv_memory_mib, "KV pool size in MiB (0 = sized for the request)")
        ->check(CLI::NonNegativeNumber);
    app->add_option("--num-blocks", num_blocks, "KV pool size in blocks (overrides --kv-memory-mib)")
        ->check(CLI::NonNegativeNumber);
    if (sampling) {
      app->add_option("--temperature", temperature, "Sampling temperature (0 = greedy)")
          ->check(CLI::Range(0.0f, 100.0f))
          ->capture_default_str();
      app->add_option("--top-k", top_k, "Keep the K most likely tokens (0 = off)")
          ->check(CLI::NonNegativeNumber);
      app->add_option("--top-p", top_p, "Nucleus sampling mass in (0, 1] (1 = off)")
          ->check(CLI::Range(0.0f, 1.0f))
          ->capture_default_str();
      app->add_option("--seed", seed, "Random seed (sampling is deterministic per seed)")
          ->capture_default_str();
      app->add_flag("--ignore-eos", ignore_eos, "Keep generating past end-of-generation tokens");
    }
  }

  kvinfer::EngineOptions Engine(int max_seq_len_auto) const {
    kvinfer::EngineOptions o;
    o.kv.strategy = *kvinfer::ParseKvStrategy(kv);
    o.kv.block_size_tokens = block_size;
    o.kv.memory_bytes = static_cast<int64_t>(kv_memory_mib * 1024.0 * 1024.0);
    o.kv.num_blocks = num_blocks;
    o.kv.max_seq_len = max_seq_len > 0 ? max_seq_len : max_seq_len_auto;
    o.num_threads = threads;
    o.max_seqs = 1;
    return o;
  }

  kvinfer::SamplingParams Sampling(int max_tokens) const {
    kvinfer::SamplingParams p;
    p.max_tokens = max_tokens;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = seed;
    p.ignore_eos = ignore_eos;
    return p;
  }
};

json StatsJson(const kvinfer::KvCacheStats& s) {
  return {{"strategy", s.strategy},
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
          {"usage_ratio", s.usage_ratio}};
}

// Runs one request to completion, streaming text to stdout. Returns the
// final output and the KV stats seen at the fullest point.
struct RunResult {
  kvinfer::RequestOutput final;
  kvinfer::KvCacheStats peak_kv;
  std::string text;
};

RunResult RunToCompletion(Engine& engine, kvinfer::RequestId id, bool stream) {
  RunResult res;
  while (engine.HasWork()) {
    std::vector<kvinfer::RequestOutput> outs = engine.Step();
    kvinfer::KvCacheStats st = engine.KvStats();
    if (st.bytes_reserved >= res.peak_kv.bytes_reserved) res.peak_kv = st;
    for (kvinfer::RequestOutput& o : outs) {
      if (o.id != id) continue;
      res.text += o.text_delta;
      if (stream && !o.text_delta.empty()) {
        std::fwrite(o.text_delta.data(), 1, o.text_delta.size(), stdout);
        std::fflush(stdout);
      }
      if (o.finished) res.final = std::move(o);
    }
  }
  return res;
}

int CmdGenerate(const RunFlags& f, const std::string& prompt, int max_tokens, bool chat,
                const std::string& stats_path) {
  Model model = LoadModel(f.model);
  std::string text = prompt;
  kvinfer::RequestOptions ro;
  if (chat) {
    const kvinfer::ChatMessage msg{"user", prompt};
    kvinfer::StatusOr<std::string> rendered = model.ApplyChatTemplate({&msg, 1}, true);
    DieIf(rendered.status(), "chat template");
    text = *rendered;
    ro.parse_special = true;
  }
  kvinfer::StatusOr<std::vector<int32_t>> ids = model.Tokenize(text, true, ro.parse_special);
  DieIf(ids.status(), "tokenize");
  const int context = model.info().context_length;
  if (static_cast<int64_t>(ids->size()) > context) {
    Die(fmt::format("the prompt has {} tokens but the model's context holds {}", ids->size(), context));
  }
  const int auto_len = static_cast<int>(std::min<int64_t>(context, ids->size() + max_tokens));
  auto engine = Engine::Create(model, f.Engine(auto_len));
  DieIf(engine.status(), "engine");
  const size_t n_prompt = ids->size();
  kvinfer::StatusOr<kvinfer::RequestId> id =
      (*engine)->AddRequestTokens(std::move(ids).value(), f.Sampling(max_tokens), ro);
  DieIf(id.status(), "request");
  RunResult res = RunToCompletion(**engine, *id, true);
  std::fputc('\n', stdout);
  std::fflush(stdout);

  const kvinfer::RequestTimings& t = res.final.timings;
  std::fprintf(stderr,
               "kvinfer: %zu prompt + %lld generated tokens (%s) | TTFT %.1f ms | prefill %.1f tok/s | "
               "decode %.1f tok/s | KV %s reserved %.2f MiB, used %.2f MiB\n",
               n_prompt, static_cast<long long>(t.generated_tokens),
               kvinfer::FinishReasonName(res.final.finish_reason), t.ttft_ms,
               t.prefill_tokens_per_s(), t.decode_tokens_per_s(), res.peak_kv.strategy.c_str(),
               res.peak_kv.bytes_reserved / 1048576.0, res.peak_kv.bytes_used / 1048576.0);
  if (!stats_path.empty()) {
    json j = {{"model", model.info().path},
              {"kv_strategy", f.kv},
              {"threads", (*engine)->options().num_threads},
              {"prompt_tokens", t.prompt_tokens},
              {"generated_tokens", t.generated_tokens},
              {"finish_reason", kvinfer::FinishReasonName(res.final.finish_reason)},
              {"ttft_ms", t.ttft_ms},
              {"prefill_ms", t.prefill_ms},
              {"decode_ms", t.decode_ms},
              {"total_ms", t.total_ms},
              {"prefill_tokens_per_s", t.prefill_tokens_per_s()},
              {"decode_tokens_per_s", t.decode_tokens_per_s()},
              {"kv", StatsJson(res.peak_kv)}};
    std::ofstream out(stats_path);
    if (!out) Die(fmt::format("cannot write '{}'", stats_path));
    out << j.dump(2) << "\n";
  }
  return 0;
}

int CmdChat(const RunFlags& f, int max_tokens, const std::string& system) {
  Model model = LoadModel(f.model);
  auto engine = Engine::Create(model, f.Engine(model.info().context_length));
  DieIf(engine.status(), "engine");
  Engine& e = **engine;
  kvinfer::SessionId session = e.CreateSession();
  std::vector<kvinfer::ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  const bool tty = isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr,
               "kvinfer chat — %s (%s template, KV %s). /reset clears the conversation, /quit "
               "exits.\n",
               model.info().name.c_str(), model.info().chat_template.c_str(), f.kv.c_str());
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      e.EndSession(session);
      session = e.CreateSession();
      messages.clear();
      if (!system.empty()) messages.push_back({"system", system});
      std::fputs("(conversation cleared)\n", stderr);
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    kvinfer::StatusOr<std::string> text = model.ApplyChatTemplate(messages, true);
    DieIf(text.status(), "chat template");
    kvinfer::RequestOptions ro{.parse_special = true, .add_special = true, .session = session};
    kvinfer::StatusOr<kvinfer::RequestId> id = e.AddRequest(*text, f.Sampling(max_tokens), ro);
    if (!id.ok()) {
      std::fprintf(stderr, "kvinfer: %s\n", id.status().ToString().c_str());
      messages.pop_back();
      continue;
    }
    RunResult res = RunToCompletion(e, *id, true);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    messages.push_back({"assistant", res.text});
    const kvinfer::RequestTimings& t = res.final.timings;
    std::fprintf(stderr, "[%lld prompt tokens: %lld reused from the cache, %lld prefilled | %lld generated, %.1f tok/s | %s]\n",
                 static_cast<long long>(t.prompt_tokens),
                 static_cast<long long>(t.cached_prompt_tokens),
                 static_cast<long long>(t.prompt_tokens - t.cached_prompt_tokens),
                 static_cast<long long>(t.generated_tokens), t.decode_tokens_per_s(),
                 kvinfer::FinishReasonName(res.final.finish_reason));
  }
  return 0;
}

int CmdInfo(const std::string& path, bool as_json) {
  Model model = LoadModel(path);
  const kvinfer::ModelInfo& i = model.info();
  json types = json::object();
  for (const auto& [name, count] : i.tensor_types) types[name] = count;
  if (as_json) {
    json j = {{"path", i.path},
              {"format", i.format},
              {"architecture", i.architecture},
              {"name", i.name},
              {"n_layers", i.n_layers},
              {"d_model", i.d_model},
              {"n_heads", i.n_heads},
              {"n_kv_heads", i.n_kv_heads},
              {"head_dim", i.head_dim},
              {"d_ff", i.d_ff},
              {"vocab_size", i.vocab_size},
              {"context_length", i.context_length},
              {"rope_dims", i.rope_dims},
              {"rope_theta", i.rope_theta},
              {"norm_eps", i.norm_eps},
              {"tied_output", i.tied_output},
              {"num_parameters", i.num_parameters},
              {"weight_bytes", i.weight_bytes},
              {"tensor_types", types},
              {"tokenizer", i.tokenizer},
              {"chat_template", i.chat_template},
              {"kv_bytes_per_token_f32", i.kv_bytes_per_token_f32},
              {"kv_bytes_per_token_f16", i.kv_bytes_per_token_f16}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  const char* attn = i.n_kv_heads == i.n_heads ? "MHA" : (i.n_kv_heads == 1 ? "MQA" : "GQA");
  std::string type_list;
  for (const auto& [name, count] : i.tensor_types) {
    type_list += fmt::format("{}{} x{}", type_list.empty() ? "" : ", ", name, count);
  }
  fmt::print("file            {} ({})\n", i.path, i.format);
  fmt::print("name            {}\n", i.name);
  fmt::print("architecture    {}\n", i.architecture);
  fmt::print("layers          {}\n", i.n_layers);
  fmt::print("hidden size     {}\n", i.d_model);
  fmt::print("attention       {} heads, {} KV heads ({}), head dim {}\n", i.n_heads, i.n_kv_heads,
             attn, i.head_dim);
  fmt::print("feed-forward    {}\n", i.d_ff);
  fmt::print("vocabulary      {} ({})\n", i.vocab_size, i.tokenizer);
  fmt::print("context         {} tokens\n", i.context_length);
  fmt::print("rope            {} dims, theta {}\n", i.rope_dims, i.rope_theta);
  fmt::print("norm eps        {}\n", i.norm_eps);
  fmt::print("output          {}\n", i.tied_output ? "tied to token embeddings" : "separate matrix");
  fmt::print("parameters      {} ({:.1f} M), {:.1f} MiB of weights\n", i.num_parameters,
             i.num_parameters / 1e6, i.weight_bytes / 1048576.0);
  fmt::print("tensor types    {}\n", type_list);
  fmt::print("chat template   {}\n", i.chat_template);
  fmt::print("KV per token    {} bytes (f32), {} bytes (f16)\n", i.kv_bytes_per_token_f32,
             i.kv_bytes_per_token_f16);
  fmt::print("KV at context   {:.1f} MiB (f32), {:.1f} MiB (f16)\n",
             i.kv_bytes_per_token_f32 * static_cast<double>(i.context_length) / 1048576.0,
             i.kv_bytes_per_token_f16 * static_cast<double>(i.context_length) / 1048576.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvinfer — an LLM inference engine built around the KV cache"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kvinfer::Version());

  RunFlags gen_flags;
  std::string prompt;
  std::string prompt_file;
  int max_tokens = 128;
  bool chat_format = false;
  std::string stats_json;
  CLI::App* gen = app.add_subcommand("generate", "Generate a continuation of a prompt (text on stdout)");
  gen_flags.Add(gen, true);
  auto* prompt_opt = gen->add_option("--prompt,-p", prompt, "Prompt text");
  gen->add_option("--prompt-file", prompt_file, "Read the prompt from a file")
      ->check(CLI::ExistingFile)
      ->excludes(prompt_opt);
  gen->add_option("--max-tokens,-n", max_tokens, "Tokens to generate at most")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  gen->add_flag("--chat", chat_format, "Wrap the prompt as a user turn in the model's chat template");
  gen->add_option("--stats-json", stats_json, "Write timings and KV statistics to this JSON file");

  RunFlags chat_flags;
  int chat_max_tokens = 512;
  std::string system_prompt;
  CLI::App* chat = app.add_subcommand(
      "chat", "Interactive multi-turn chat; the conversation's KV cache is kept between turns");
  chat_flags.Add(chat, true);
  chat->add_option("--max-tokens,-n", chat_max_tokens, "Tokens per reply at most")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  chat->add_option("--system", system_prompt, "System prompt (default: the template's own)");

  std::string info_model;
  bool info_json = false;
  CLI::App* info = app.add_subcommand("info", "Describe a model: architecture, sizes, types, KV bytes per token");
  info->add_option("--model,-m", info_model, "Model file (GGUF); default: the installed SmolLM2-135M-Instruct");
  info->add_flag("--json", info_json, "Print one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (gen->parsed()) {
    if (gen_flags.model.empty()) gen_flags.model = DefaultModelPath();
    if (!prompt_file.empty()) {
      std::ifstream in(prompt_file, std::ios::binary);
      prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (prompt.empty()) Die("generate needs a non-empty --prompt or --prompt-file");
    return CmdGenerate(gen_flags, prompt, max_tokens, chat_format, stats_json);
  }
  if (chat->parsed()) {
    if (chat_flags.model.empty()) chat_flags.model = DefaultModelPath();
    return CmdChat(chat_flags, chat_max_tokens, system_prompt);
  }
  if (info->parsed()) return CmdInfo(info_model.empty() ? DefaultModelPath() : info_model, info_json);
  return 0;
}
