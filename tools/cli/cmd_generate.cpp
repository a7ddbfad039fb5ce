// kvinfer generate: one prompt, its continuation on stdout, diagnostics and
// statistics on stderr (and --stats-json).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "cli.h"
#include "output.h"

namespace kvinfer::cli {
namespace {

struct GenerateOptions {
  RunFlags run;
  std::string prompt;
  std::string prompt_file;
  int max_tokens = 128;
  int n = 1;
  bool chat = false;
  std::string stats_json;
};

// n > 1: the samples share the prompt's KV blocks; print each sample, then
// what sharing saved against n independent caches.
void RunSamples(const Model& model, Engine& engine, RequestId id, const GenerateOptions& o,
                size_t n_prompt) {
  std::vector<std::string> texts(o.n);
  std::vector<RequestOutput> finals(o.n);
  KvCacheStats peak;
  int64_t peak_logical = 0;
  bool aborted = false;
  while (engine.HasWork()) {
    if (!aborted && StopSignal() != 0) {
      engine.Abort(id);  // every sample of the request
      aborted = true;
    }
    for (RequestOutput& out : engine.Step()) {
      const int i = out.sample_index;
      texts[i] += out.text_delta;
      if (out.finished) finals[i] = std::move(out);
    }
    const KvCacheStats st = engine.KvStats();
    if (st.bytes_reserved >= peak.bytes_reserved) peak = st;
    peak_logical = std::max(peak_logical, st.bytes_logical);
  }
  int failed = 0;
  for (int i = 0; i < o.n; ++i) {
    WriteStdout(fmt::format("--- sample {} (seed {}, {}) ---\n{}\n", i, o.run.seed + i,
                            FinishReasonName(finals[i].finish_reason), texts[i]));
    if (finals[i].finish_reason == FinishReason::kError) {
      std::fprintf(stderr, "kvinfer: error: sample %d: %s\n", i,
                   Printable(finals[i].error).c_str());
      ++failed;
    }
  }
  const double saved = peak_logical > 0 ? 100.0 * (1.0 - static_cast<double>(peak.peak_bytes_reserved) /
                                                             static_cast<double>(peak_logical))
                                        : 0.0;
  std::fprintf(stderr,
               "kvinfer: %d samples of a %zu-token prompt | KV %s: peak reserved %.2f MiB with "
               "shared prompt blocks vs %.2f MiB for %d independent caches (%.1f%% saved), %lld "
               "copy-on-write block copies\n",
               o.n, n_prompt, peak.strategy.c_str(), peak.peak_bytes_reserved / 1048576.0,
               peak_logical / 1048576.0, o.n, saved, static_cast<long long>(engine.KvStats().num_cow_copies));
  if (!o.stats_json.empty()) {
    nlohmann::json samples = nlohmann::json::array();
    for (int i = 0; i < o.n; ++i) {
      samples.push_back({{"text", texts[i]},
                         {"generated_tokens", finals[i].timings.generated_tokens},
                         {"finish_reason", FinishReasonName(finals[i].finish_reason)}});
      if (finals[i].finish_reason == FinishReason::kError) samples.back()["error"] = finals[i].error;
    }
    const nlohmann::json j = {{"model", model.info().path},
                              {"kv_strategy", o.run.kv},
                              {"n", o.n},
                              {"prompt_tokens", n_prompt},
                              {"samples", samples},
                              {"peak_bytes_reserved", peak.peak_bytes_reserved},
                              {"peak_bytes_independent", peak_logical},
                              {"saved_percent", saved},
                              {"num_cow_copies", engine.KvStats().num_cow_copies},
                              {"prefix_cache", PrefixCacheJson(engine)},
                              {"kv", KvStatsJson(peak)}};
    WriteOutputFile(o.stats_json, JsonText(j) + "\n");
  }
  if (const int sig = StopSignal(); sig != 0) {
    std::fprintf(stderr, "kvinfer: stopped by signal %d\n", sig);
    std::exit(ExitStatusForSignal(sig));
  }
  if (failed > 0) Die(fmt::format("{} of {} samples failed", failed, o.n));
}

void RunGenerate(const GenerateOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) {
      Die(fmt::format("cannot read --prompt-file '{}': {}", o.prompt_file, std::strerror(errno)));
    }
    prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) Die(fmt::format("cannot read --prompt-file '{}'", o.prompt_file));
    if (prompt.empty()) Die(fmt::format("--prompt-file '{}' is empty", o.prompt_file));
  }
  if (prompt.empty()) Die("generate needs a non-empty --prompt or --prompt-file");
  const std::string model_path = o.run.ModelPath();
  if (!o.stats_json.empty()) {
    CheckOutputPath(o.stats_json, "--stats-json", {model_path, o.prompt_file});
  }
  InstallStopSignals();

  Model model = LoadModel(model_path);
  RequestOptions ro;
  std::string text = prompt;
  if (o.chat) {
    WarnIfChatTemplateGuessed(model.info());
    const ChatMessage msg{"user", prompt};
    StatusOr<std::string> rendered = model.ApplyChatTemplate({&msg, 1}, true);
    DieIf(rendered.status(), "chat template");
    text = *rendered;
    ro.parse_special = true;
  }
  StatusOr<std::vector<int32_t>> ids = model.Tokenize(text, true, ro.parse_special);
  DieIf(ids.status(), "tokenize");
  const int context = model.info().context_length;
  if (static_cast<int64_t>(ids->size()) > context) {
    Die(fmt::format("the prompt has {} tokens but the model's context holds {}", ids->size(),
                    context));
  }
  // contiguous reserves max_seq_len up front: by default exactly what this
  // request can reach.
  const int auto_len = static_cast<int>(std::min<int64_t>(context, ids->size() + o.max_tokens));
  EngineOptions eo = o.run.Engine(auto_len);
  eo.max_seqs = o.n;
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  const size_t n_prompt = ids->size();
  SamplingParams sp = o.run.Sampling(o.max_tokens);
  sp.n = o.n;
  StatusOr<RequestId> id = (*engine)->AddRequestTokens(std::move(ids).value(), sp, ro);
  DieIf(id.status(), "request");
  if (o.n > 1) {
    RunSamples(model, **engine, *id, o, n_prompt);
    return;
  }
  RunResult res = RunToCompletion(**engine, *id, true);
  if (!res.output_lost) WriteStdout("\n");

  const RequestTimings& t = res.final.timings;
  std::fprintf(stderr,
               "kvinfer: %zu prompt + %lld generated tokens (%s) | TTFT %.1f ms | prefill %.1f "
               "tok/s | decode %.1f tok/s | KV %s: reserved %.2f MiB, used %.2f MiB\n",
               n_prompt, static_cast<long long>(t.generated_tokens),
               FinishReasonName(res.final.finish_reason), t.ttft_ms, t.prefill_tokens_per_s(),
               t.decode_tokens_per_s(), res.peak_kv.strategy.c_str(),
               res.peak_kv.bytes_reserved / 1048576.0, res.peak_kv.bytes_used / 1048576.0);
  if (!o.stats_json.empty()) {
    nlohmann::json j = {{"model", model.info().path},
                        {"kv_strategy", o.run.kv},
                        {"threads", (*engine)->options().num_threads},
                        {"prompt_tokens", t.prompt_tokens},
                        {"generated_tokens", t.generated_tokens},
                        {"finish_reason", FinishReasonName(res.final.finish_reason)},
                        {"ttft_ms", t.ttft_ms},
                        {"prefill_ms", t.prefill_ms},
                        {"decode_ms", t.decode_ms},
                        {"total_ms", t.total_ms},
                        {"prefill_tokens_per_s", t.prefill_tokens_per_s()},
                        {"decode_tokens_per_s", t.decode_tokens_per_s()},
                        {"cached_prompt_tokens", res.final.num_cached_tokens},
                        {"prefix_cache", PrefixCacheJson(**engine)},
                        {"kv", KvStatsJson(res.peak_kv)}};
    if (res.final.finish_reason == FinishReason::kError) j["error"] = res.final.error;
    WriteOutputFile(o.stats_json, JsonText(j) + "\n");
  }
  if (res.output_lost) Die("standard output could not be written; generation stopped");
  if (const int sig = StopSignal(); sig != 0) {
    std::fprintf(stderr, "kvinfer: stopped by signal %d after %lld tokens\n", sig,
                 static_cast<long long>(t.generated_tokens));
    std::exit(ExitStatusForSignal(sig));
  }
  // The request's own error (e.g. non-finite logits from a corrupt model),
  // after the text it produced before it.
  if (res.final.finish_reason == FinishReason::kError) Die(Printable(res.final.error));
  if (res.final.finish_reason == FinishReason::kKvExhausted) {
    Die(fmt::format("the prompt ({} tokens) does not fit the KV pool ({} blocks of {} tokens); "
                    "raise --kv-memory-mib or --num-blocks",
                    n_prompt, res.peak_kv.num_blocks_total, res.peak_kv.block_size_tokens));
  }
}

}  // namespace

void AddGenerateCommand(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate a continuation of a prompt (text on stdout)");
  o->run.Add(cmd, true);
  CLI::Option* prompt = cmd->add_option("--prompt,-p", o->prompt, "Prompt text");
  cmd->add_option("--prompt-file", o->prompt_file, "Read the prompt from a file")
      ->check(CLI::ExistingFile)
      ->excludes(prompt);
  cmd->add_option("--max-tokens,-n", o->max_tokens, "Tokens to generate at most")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--n", o->n,
                  "Independent samples of the prompt; they share its KV blocks (copy-on-write). "
                  "Sample i uses seed + i")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_flag("--chat", o->chat, "Wrap the prompt as a user turn in the model's chat template");
  cmd->add_option("--stats-json", o->stats_json,
                  "Write timings (TTFT, prefill/decode tok/s) and KV statistics to this JSON file");
  cmd->callback([o] { RunGenerate(*o); });
}

}  // namespace kvinfer::cli
