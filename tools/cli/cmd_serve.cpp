// kvinfer serve: the OpenAI-compatible HTTP server (kvinfer/server.h).
// Logs a startup banner and one line per request on stderr; SIGINT/SIGTERM
// stop accepting requests, let running ones finish for --drain-seconds,
// abort the rest and exit 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "cli.h"
#include "kvinfer/server.h"

namespace kvinfer::cli {
namespace {

struct ServeOptions {
  RunFlags run;
  ServerOptions server;
  int max_seqs = 64;
  int max_batch_tokens = 2048;
  double drain_seconds = 30;
  double max_body_mib = 8;
  double kv_memory_fraction = 0.25;
};

// MemAvailable from /proc/meminfo in bytes; 0 when unknown.
int64_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

void Run(ServeOptions& o) {
  Model model = LoadModel(o.run.ModelPath());
  const ModelInfo& info = model.info();
  WarnIfChatTemplateGuessed(info);

  EngineOptions eo = o.run.Engine(info.context_length);
  eo.max_seqs = o.max_seqs;
  eo.max_batch_tokens = o.max_batch_tokens;
  std::string pool_rule = "--kv-memory-mib";
  if (o.run.kv_memory_mib <= 0 && o.run.num_blocks <= 0 && eo.kv.strategy == KvStrategy::kPaged) {
    // A share of the memory free now, but no more than max_seqs sequences of
    // max_seq_len tokens can use.
    const int64_t per_token = eo.kv.precision == KvPrecision::kF32    ? info.kv_bytes_per_token_f32
                              : eo.kv.precision == KvPrecision::kF16  ? info.kv_bytes_per_token_f16
                              : eo.kv.precision == KvPrecision::kQ8_0 ? info.kv_bytes_per_token_q8_0
                                                                      : info.kv_bytes_per_token_q4_0;
    const int64_t most = per_token * eo.kv.max_seq_len * eo.max_seqs;
    const int64_t share = static_cast<int64_t>(AvailableMemoryBytes() * o.kv_memory_fraction);
    if (share > 0) {
      eo.kv.memory_bytes = std::min(share, most);
      pool_rule = share < most ? fmt::format("{:.0f}% of available memory", o.kv_memory_fraction * 100)
                               : "max_seqs x max_seq_len";
    }
  } else if (o.run.num_blocks > 0) {
    pool_rule = "--num-blocks";
  }
  // The whole pool is made resident at start: a server holds its memory,
  // and no request pays the page faults of blocks never used before (with
  // the prefix cache, never-used blocks are taken first, so a lazily
  // mapped pool faults in for as long as it takes to use every block once).
  eo.kv.resident = true;
  o.server.max_body_bytes = static_cast<int64_t>(o.max_body_mib * 1048576.0);
  o.server.write_timeout_s = o.server.read_timeout_s;

  // Every thread the server starts inherits this mask; the signals are taken
  // by sigwait below, not by a handler interrupting some thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a signal

  StatusOr<std::unique_ptr<Server>> server = Server::Create(model, eo, o.server);
  DieIf(server.status(), "serve");
  const KvCacheStats kv = (*server)->KvStats();
  std::fprintf(stderr,
               "kvinfer serve: model %s (%s, %d layers, context %d) as '%s'\n"
               "kvinfer serve: KV %s %s: %lld blocks x %d tokens = %lld tokens, %.1f MiB resident (%s); "
               "max_seq_len %d, max_seqs %d, max_batch_tokens %d\n",
               info.path.c_str(), info.architecture.c_str(), info.n_layers, info.context_length,
               (*server)->model_name().c_str(), kv.strategy.c_str(), kv.precision.c_str(),
               static_cast<long long>(kv.num_blocks_total), kv.block_size_tokens,
               static_cast<long long>(kv.num_blocks_total * kv.block_size_tokens),
               static_cast<double>(kv.bytes_total) / 1048576.0, pool_rule.c_str(), eo.kv.max_seq_len,
               eo.max_seqs, eo.max_batch_tokens);
  (*server)->Start();
  std::fprintf(stderr, "kvinfer serve: listening on http://%s:%d\n", o.server.host.c_str(),
               (*server)->port());
  std::fflush(stderr);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "kvinfer serve: %s: draining (up to %.0f s), then exiting\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", o.drain_seconds);
  std::fflush(stderr);
  (*server)->Stop(std::chrono::milliseconds(static_cast<int64_t>(o.drain_seconds * 1000)));
  const EngineStats st = (*server)->Stats();
  std::fprintf(stderr, "kvinfer serve: stopped after %lld steps, %lld preemptions\n",
               static_cast<long long>(st.num_steps), static_cast<long long>(st.num_preemptions));
}

}  // namespace

void AddServeCommand(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  o->run.kv = "paged";
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve the model over HTTP with OpenAI's API (chat page at /, metrics at /metrics)");
  o->run.Add(cmd, /*sampling=*/false);
  cmd->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->server.port, "Port to listen on (0 = any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--api-key", o->server.api_key,
                  "Require 'Authorization: Bearer KEY' on /v1/ requests");
  cmd->add_option("--served-model-name", o->server.served_model_name,
                  "The model's name in the API (default: the model file's name)");
  cmd->add_option("--max-seqs", o->max_seqs, "Sequences running at once at most")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens in one engine step at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-waiting", o->server.max_waiting,
                  "Requests waiting for admission at most (more get 429)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--kv-memory-fraction", o->kv_memory_fraction,
                  "paged, without --kv-memory-mib/--num-blocks: the KV pool's share of the memory "
                  "available at start (capped at max-seqs full-length sequences)")
      ->check(CLI::Range(0.01, 0.95))
      ->capture_default_str();
  cmd->add_option("--drain-seconds", o->drain_seconds,
                  "On SIGINT/SIGTERM, how long running requests may finish before being aborted")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--http-threads", o->server.http_threads,
                  "Connections served at once (each open stream holds one)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--max-body-mib", o->max_body_mib, "Largest request body (larger get 413)")
      ->check(CLI::Range(0.001, 1024.0))
      ->capture_default_str();
  cmd->add_option("--timeout", o->server.read_timeout_s,
                  "Seconds a client may take to send a request or take streamed bytes")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->callback([o] { Run(*o); });
}

}  // namespace kvinfer::cli
