// kvinfer batch: many prompts through one engine with continuous batching.
// Input: JSON lines {"prompt": ..., "max_tokens", "temperature", "top_k",
// "top_p", "seed", "ignore_eos", "chat"}; output: one JSON line per request,
// in input order as each completes the finished prefix (on SIGINT/SIGTERM,
// every finished one, each with its index); a summary on stderr. A request
// that failed (finish_reason "error": e.g. non-finite logits) has an
// "error" string in its line and is counted as failed in the summary; the
// others are unaffected and the exit status stays 0.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include <fmt/format.h>

#include "batch_request.h"
#include "cli.h"
#include "output.h"

namespace kvinfer::cli {
namespace {

struct BatchOptions {
  RunFlags run;
  std::string prompts_path;
  int max_seqs = 16;
  int max_batch_tokens = 512;
  int default_max_tokens = 128;
};

void RunBatch(const BatchOptions& o) {
  std::ifstream in(o.prompts_path);
  if (!in) Die(fmt::format("cannot read '{}'", o.prompts_path));
  std::vector<BatchRequest> items;
  std::string line;
  const SamplingParams defaults = o.run.Sampling(o.default_max_tokens);
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    StatusOr<BatchRequest> r = ParseBatchRequest(line, defaults);
    if (!r.ok()) Die(fmt::format("{}:{}: {}", o.prompts_path, line_no, r.status().message()));
    items.push_back(std::move(r).value());
  }
  if (in.bad()) Die(fmt::format("cannot read '{}': {}", o.prompts_path, std::strerror(errno)));
  if (items.empty()) Die(fmt::format("'{}' holds no prompts", o.prompts_path));

  InstallStopSignals();
  Model model = LoadModel(o.run.ModelPath());
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string text = items[i].prompt;
    if (items[i].chat) {
      const ChatMessage msg{"user", text};
      StatusOr<std::string> r = model.ApplyChatTemplate({&msg, 1}, true);
      DieIf(r.status(), fmt::format("request {}", i));
      text = *r;
    }
    StatusOr<std::vector<int32_t>> ids = model.Tokenize(text, true, items[i].chat);
    DieIf(ids.status(), fmt::format("request {}", i));
    longest = std::max<int64_t>(longest, ids->size() + items[i].params.max_tokens);
    prompts.push_back(std::move(ids).value());
  }
  // contiguous reserves max_seq_len per sequence: by default the longest
  // any request can reach.
  const int auto_len = static_cast<int>(std::min<int64_t>(model.info().context_length, longest));
  EngineOptions eo = o.run.Engine(auto_len);
  eo.max_seqs = o.max_seqs;
  eo.max_batch_tokens = o.max_batch_tokens;
  auto engine = Engine::Create(model, eo);
  DieIf(engine.status(), "engine");
  Engine& e = **engine;

  std::vector<RequestId> ids(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    StatusOr<RequestId> id = e.AddRequestTokens(std::move(prompts[i]), items[i].params);
    DieIf(id.status(), fmt::format("request {} (line {} of the input)", i, i + 1));
    ids[i] = *id;
  }
  std::map<RequestId, size_t> index;
  for (size_t i = 0; i < ids.size(); ++i) index[ids[i]] = i;
  std::vector<std::string> texts(items.size());
  std::vector<std::vector<int32_t>> tokens(items.size());
  std::vector<RequestOutput> finals(items.size());
  std::vector<bool> written(items.size(), false);

  // Results are written in input order as soon as every earlier one is
  // written; on a signal the unfinished requests are aborted and every
  // finished one is written (out of order: each line carries its index).
  auto write_result = [&](size_t i) {
    const RequestTimings& t = finals[i].timings;
    nlohmann::json j = {{"index", i},
                        {"text", texts[i]},
                        {"tokens", tokens[i]},
                        {"finish_reason", FinishReasonName(finals[i].finish_reason)},
                        {"prompt_tokens", t.prompt_tokens},
                        {"cached_prompt_tokens", finals[i].num_cached_tokens},
                        {"generated_tokens", t.generated_tokens},
                        {"queue_ms", t.queue_ms},
                        {"ttft_ms", t.ttft_ms},
                        {"decode_ms", t.decode_ms},
                        {"total_ms", t.total_ms},
                        {"time_per_output_token_ms",
                         t.generated_tokens > 1 ? t.decode_ms / (t.generated_tokens - 1) : 0.0}};
    if (finals[i].finish_reason == FinishReason::kError) j["error"] = finals[i].error;
    written[i] = true;
    if (!WriteStdout(JsonText(j, -1) + "\n")) {
      Die(fmt::format("standard output could not be written (result {}): {}", i,
                      std::strerror(errno)));
    }
  };
  size_t next_to_write = 0;

  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto t0 = std::chrono::steady_clock::now();
  size_t done = 0;
  int64_t peak_blocks = 0, generated = 0;
  int stopped_by = 0;
  while (e.HasWork()) {
    if (stopped_by == 0 && StopSignal() != 0) {
      stopped_by = StopSignal();
      for (size_t i = 0; i < items.size(); ++i) {
        if (!finals[i].finished) e.Abort(ids[i]);
      }
    }
    for (RequestOutput& out : e.Step()) {
      const size_t i = index.at(out.id);
      texts[i] += out.text_delta;
      tokens[i].insert(tokens[i].end(), out.new_tokens.begin(), out.new_tokens.end());
      generated += static_cast<int64_t>(out.new_tokens.size());
      if (out.finished) {
        finals[i] = std::move(out);
        ++done;
      }
    }
    while (stopped_by == 0 && next_to_write < items.size() && finals[next_to_write].finished) {
      write_result(next_to_write++);
    }
    peak_blocks = std::max(peak_blocks, e.KvStats().num_blocks_used);
    if (tty) {
      const EngineStats st = e.Stats();
      const int width = 30;
      const int filled = static_cast<int>(width * done / items.size());
      std::fprintf(stderr, "\r[%s%s] %zu/%zu done, %lld running, %lld waiting, %lld tokens",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), done,
                   items.size(), static_cast<long long>(st.num_running),
                   static_cast<long long>(st.num_waiting), static_cast<long long>(generated));
    }
  }
  if (tty) std::fputc('\n', stderr);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t kept = 0, failed = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    failed += finals[i].finished && finals[i].finish_reason == FinishReason::kError ? 1 : 0;
    if (!written[i] && finals[i].finished && finals[i].finish_reason != FinishReason::kAborted) {
      write_result(i);
    }
    kept += written[i] ? 1 : 0;
  }
  const EngineStats st = e.Stats();
  const KvCacheStats kv = e.KvStats();
  std::fprintf(stderr,
               "kvinfer batch: %zu requests, %zu failed, %lld generated tokens in %.2f s = %.1f "
               "tok/s | KV %s: %lld blocks of %d tokens, peak %lld used | peak %lld sequences "
               "running | %lld preemptions | %lld steps | prefix cache %s: %lld of %lld prompt "
               "tokens cached, %lld blocks evicted\n",
               items.size(), failed, static_cast<long long>(generated), seconds,
               generated / seconds,
               kv.strategy.c_str(), static_cast<long long>(kv.num_blocks_total), kv.block_size_tokens,
               static_cast<long long>(peak_blocks), static_cast<long long>(st.peak_running),
               static_cast<long long>(st.num_preemptions), static_cast<long long>(st.num_steps),
               kv.prefix_cache.c_str(), static_cast<long long>(st.prefix_cache_hits),
               static_cast<long long>(st.prefix_cache_queries),
               static_cast<long long>(st.prefix_cache_blocks_evicted));
  // A failed request does not fail the batch: its result line carries
  // finish_reason "error" and the error, and each is also said here.
  for (size_t i = 0; i < items.size(); ++i) {
    if (finals[i].finished && finals[i].finish_reason == FinishReason::kError) {
      std::fprintf(stderr, "kvinfer batch: request %zu failed: %s\n", i,
                   Printable(finals[i].error).c_str());
    }
  }
  if (stopped_by != 0) {
    std::fprintf(stderr, "kvinfer batch: stopped by signal %d; %zu of %zu results written\n",
                 stopped_by, kept, items.size());
    std::exit(ExitStatusForSignal(stopped_by));
  }
}

}  // namespace

void AddBatchCommand(CLI::App& app) {
  auto o = std::make_shared<BatchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "batch", "Run many prompts (JSON lines) with continuous batching; results as JSON lines");
  o->run.Add(cmd, true);
  cmd->add_option("--prompts", o->prompts_path,
                  "JSON-lines file: {\"prompt\": ..., \"max_tokens\", \"temperature\", \"top_k\", "
                  "\"top_p\", \"seed\", \"ignore_eos\", \"chat\"} (all but prompt optional)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-seqs", o->max_seqs, "Sequences running at once at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens,
                  "Tokens per forward step at most (long prompts are prefilled in chunks)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-tokens,-n", o->default_max_tokens,
                  "Default max_tokens for lines that do not set it")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->callback([o] { RunBatch(*o); });
}

}  // namespace kvinfer::cli
