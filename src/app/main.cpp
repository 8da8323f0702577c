// longhaul: DiLoCo-style training across data centers. `longhaul --help` lists subcommands.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "app/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  using namespace longhaul;
  CLI::App app{"longhaul: train one model across data centers over thin, untrusted links"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "longhaul 0.1.0");
  app::CommandFn run;
  app::register_train(app, run);
  app::register_coordinator(app, run);
  app::register_site(app, run);
  app::register_certs(app, run);
  app::register_bench(app, run);
  app::register_checkpoint(app, run);
  app::register_status(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const UserError& e) {
    std::fprintf(stderr, "longhaul: error: %s\n", e.what());
    return 2;
  }
  if (!run) return 0;
  try {
    return run();
  } catch (const UserError& e) {
    std::fprintf(stderr, "longhaul: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "longhaul: fatal: %s\n", e.what());
    return 1;
  }
}
