// kvinfer: the command-line front end.
#include <CLI/CLI.hpp>

#include "cli.h"

int main(int argc, char** argv) {
  CLI::App app{"kvinfer — an LLM inference engine built around the KV cache"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kvinfer::Version());
  kvinfer::cli::AddGenerateCommand(app);
  kvinfer::cli::AddChatCommand(app);
  kvinfer::cli::AddBatchCommand(app);
  kvinfer::cli::AddInfoCommand(app);
  kvinfer::cli::AddKvSizeCommand(app);
  kvinfer::cli::AddBenchCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
