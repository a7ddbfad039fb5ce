// kvinfer chat: an interactive multi-turn conversation. The engine session
// keeps the conversation's KV cache, so each turn prefills only what is new.
// --stats-json writes one object per turn: prompt_tokens,
// cached_prompt_tokens, generated_tokens, finish_reason, decode_tokens_per_s
// (a failed turn: prompt_tokens, generated_tokens, finish_reason "error" and
// the error). A failed turn is reported and left out of the conversation.
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
  auto reset = [&] {
    messages.clear();
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
    StatusOr<RequestId> id = e.AddRequest(*text, o.run.Sampling(o.max_tokens), ro);
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
                    JsonText(nlohmann::json{{"model", model.info().path}, {"turns", turns}}) + "\n");
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
