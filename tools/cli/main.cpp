// kvinfer: the command-line front end.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "output.h"

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
  kvinfer::cli::AddServeCommand(app);
  // A first word that is not an option must name a subcommand; CLI11 alone
  // would report it as a missing subcommand.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    const CLI::App& root = app;
    for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "kvinfer: error: unknown subcommand '%s' (expected one of: %s)\n",
                   kvinfer::cli::Printable(argv[1]).c_str(), names.c_str());
      return static_cast<int>(CLI::ExitCodes::ExtrasError);
    }
  }
  // The boundary for exceptions from the libraries the commands use (the
  // engine's API returns Status and throws nothing).
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvinfer: error: %s\n", e.what());
    return 1;
  }
  if (!kvinfer::cli::StdoutIntact()) {
    const int err = errno;
    std::fprintf(stderr, "kvinfer: error: standard output could not be written (%s)\n",
                 err != 0 ? std::strerror(err) : "write failed");
    return 1;
  }
  return 0;
}
