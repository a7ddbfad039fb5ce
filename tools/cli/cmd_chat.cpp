// kvinfer chat: an interactive multi-turn conversation. Each turn prefills
// only what is new: the engine's prefix cache (paged) or the session's
// cached sequence (other strategies) holds the earlier turns.
//
// A turn's prompt is built as token ids: the previous turn's prompt ids,
// the reply's ids as sampled, then the tokens of the template's text after
// the reply (the end of the assistant turn, the new user message, the next
// assistant header). Re-tokenizing the whole rendered conversation instead
// could give other ids for the reply than were sampled (the same text, split
// differently), and every cached block from the first changed id on would
// be recomputed. When the template does not render the conversation as the
// previous prompt + the reply + more (a template that rewrites earlier
// turns), or the sampled ids do not spell the reply, the whole conversation
// is tokenized afresh.
// --stats-json writes one object per turn: prompt_tokens,
// cached_prompt_tokens, generated_tokens, finish_reason, decode_tokens_per_s
// (a failed turn: prompt_tokens, generated_tokens, finish_reason "error" and
// the error); and the prefix cache's counters (PrefixCacheJson). A failed
// turn is reported and left out of the conversation.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "cli.h"
#include "output.h"

namespace kvinfer::cli {
namespace {

struct ChatOptions {
  RunFlags run;
  int max_tokens = 512;
  std::string system;
  std::string stats_json;
};

void RunChat(const ChatOptions& o) {
  const std::string model_path = o.run.ModelPath();
  if (!o.stats_json.empty()) CheckOutputPath(o.stats_json, "--stats-json", {model_path});
  Model model = LoadModel(model_path);
  auto engine = Engine::Create(model, o.run.Engine(model.info().context_length));
  DieIf(engine.status(), "engine");
  Engine& e = **engine;
  SessionId session = e.CreateSession();
  std::vector<ChatMessage> messages;
  // The last turn's prompt: as rendered text and as the ids sent; and the
  // reply's sampled ids, when they spell the reply's text.
  std::string last_text;
  std::vector<int32_t> last_ids;
  std::vector<int32_t> reply_ids;
  bool reply_ids_exact = false;
  auto reset = [&] {
    messages.clear();
    last_text.clear();
    last_ids.clear();
    if (!o.system.empty()) messages.push_back({"system", o.system});
  };
  reset();
  const bool tty = isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr,
               "kvinfer chat: %s (%s template, KV %s). /reset clears the conversation, /quit "
               "exits; Ctrl-C stops a reply.\n",
               Printable(model.info().name).c_str(), model.info().chat_template.c_str(),
               o.run.kv.c_str());
  WarnIfChatTemplateGuessed(model.info());
  InstallStopSignals();
  nlohmann::json turns = nlohmann::json::array();
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;  // end of input, or Ctrl-C at the prompt
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      e.EndSession(session);
      session = e.CreateSession();
      reset();
      std::fputs("(conversation cleared)\n", stderr);
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    StatusOr<std::string> text = model.ApplyChatTemplate(messages, true);
    DieIf(text.status(), "chat template");
    const RequestOptions ro{.parse_special = true, .add_special = true, .session = session};
    std::vector<int32_t> ids;
    const bool after_reply =
        messages.size() >= 2 && messages[messages.size() - 2].role == "assistant";
    const std::string spoken =
        after_reply ? last_text + messages[messages.size() - 2].content : std::string();
    if (after_reply && reply_ids_exact && !last_ids.empty() && text->starts_with(spoken)) {
      StatusOr<std::vector<int32_t>> rest =
          model.Tokenize(std::string_view(*text).substr(spoken.size()), false, true);
      DieIf(rest.status(), "tokenize");
      ids = last_ids;
      ids.insert(ids.end(), reply_ids.begin(), reply_ids.end());
      ids.insert(ids.end(), rest->begin(), rest->end());
    } else {
      StatusOr<std::vector<int32_t>> all = model.Tokenize(*text, true, true);
      DieIf(all.status(), "tokenize");
      ids = std::move(all).value();
    }
    const std::vector<int32_t> sent = ids;
    StatusOr<RequestId> id = e.AddRequestTokens(std::move(ids), o.run.Sampling(o.max_tokens), ro);
    if (!id.ok()) {
      // E.g. the conversation outgrew the context: say so, keep the session.
      std::fprintf(stderr, "kvinfer: %s%s\n", id.status().ToString().c_str(),
                   id.status().code() == StatusCode::kOutOfRange
                       ? "\n(the conversation no longer fits the context: /reset starts a new one)"
                       : "");
      messages.pop_back();
      continue;
    }
    RunResult res = RunToCompletion(e, *id, true);
    if (res.output_lost) Die("standard output could not be written");
    WriteStdout("\n");
    if (StopSignal() != 0) {
      // Ctrl-C ends the reply, not the session; the partial reply stays in
      // the conversation as what the assistant said.
      ClearStopSignal();
      std::fputs("(reply stopped)\n", stderr);
    }
    const RequestTimings& t = res.final.timings;
    if (res.final.finish_reason == FinishReason::kError) {
      // The turn failed (e.g. non-finite logits): say why and drop the turn,
      // so the next one is not built on it; the session goes on.
      std::fprintf(stderr, "kvinfer: error: %s\n", Printable(res.final.error).c_str());
      messages.pop_back();
      turns.push_back({{"prompt_tokens", t.prompt_tokens},
                       {"generated_tokens", t.generated_tokens},
                       {"finish_reason", FinishReasonName(res.final.finish_reason)},
                       {"error", res.final.error}});
      continue;
    }
    messages.push_back({"assistant", res.text});
    last_text = *text;
    last_ids = sent;
    // The sampled ids, less a final end-of-turn or stop token (its text is
    // not in the reply; the template writes the end of the turn itself).
    reply_ids = res.tokens;
    if (res.final.finish_reason == FinishReason::kStop && !reply_ids.empty() &&
        model.Detokenize(reply_ids) != res.text) {
      reply_ids.pop_back();
    }
    reply_ids_exact = model.Detokenize(reply_ids) == res.text;
    std::fprintf(stderr,
                 "[%lld prompt tokens: %lld reused from the cache, %lld prefilled | %lld generated, "
                 "%.1f tok/s | %s]\n",
                 static_cast<long long>(t.prompt_tokens),
                 static_cast<long long>(t.cached_prompt_tokens),
                 static_cast<long long>(t.prompt_tokens - t.cached_prompt_tokens),
                 static_cast<long long>(t.generated_tokens), t.decode_tokens_per_s(),
                 FinishReasonName(res.final.finish_reason));
    turns.push_back({{"prompt_tokens", t.prompt_tokens},
                     {"cached_prompt_tokens", t.cached_prompt_tokens},
                     {"generated_tokens", t.generated_tokens},
                     {"finish_reason", FinishReasonName(res.final.finish_reason)},
                     {"decode_tokens_per_s", t.decode_tokens_per_s()}});
  }
  if (!o.stats_json.empty()) {
    WriteOutputFile(o.stats_json,
                    JsonText(nlohmann::json{{"model", model.info().path},
                                            {"turns", turns},
                                            {"prefix_cache", PrefixCacheJson(e)}}) +
                        "\n");
  }
}

}  // namespace

void AddChatCommand(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* cmd = app.add_subcommand(
      "chat", "Interactive multi-turn chat; the conversation's KV cache is kept between turns");
  o->run.Add(cmd, true);
  cmd->add_option("--max-tokens,-n", o->max_tokens, "Tokens per reply at most")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--system", o->system, "System prompt (default: the template's own)");
  cmd->add_option("--stats-json", o->stats_json,
                  "Write each turn's token counts and finish reason as JSON to this file");
  cmd->callback([o] { RunChat(*o); });
}

}  // namespace kvinfer::cli
