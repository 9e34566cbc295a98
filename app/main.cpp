// qkvlab: train, evaluate and compare the attention variants of "Do Transformers Need Three Projections?".
// One file per subcommand (app/cmd_*.cpp). Errors: one line on stderr, exit status 2. `train` stopped by Ctrl-C
// exits with 130 after saving its checkpoint (a CLI::RuntimeError carrying that status).
// Built with MPI=1 and started by mpirun, `train` runs data-parallel (models/distributed.h): only rank 0 prints,
// and an error on any rank ends them all (the others would wait forever in the next allreduce).
#include <cstdio>
#include <exception>
#include <string>

#include "app/common.h"
#include "app/flag_checks.h"
#include "app/openmp_policy.h"
#include "autograd/profile.h"
#include "models/distributed.h"
#include "tensor/error.h"

namespace {
int run(int argc, char** argv);
// "qkvlab", or "qkvlab (rank 1)" on the other ranks of an MPI run: each rank says its own error.
std::string me() {
  int r = qkvlab::dist::rank();
  return r == 0 ? "qkvlab" : "qkvlab (rank " + std::to_string(r) + ")";
}
// An error is one line on stderr, even when it quotes an argument with a newline or another control byte in it.
std::string one_line(const char* message) {
  std::string out;
  for (const char* p = message; *p; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += "?";
    else out += char(c);
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  qkvlab::app::set_openmp_wait_policy(argv);  // app/openmp_policy.h: how long idle threads spin
  qkvlab::dist::init(&argc, &argv);
  int status = run(argc, argv);
  if (status != 0 && status != 130 && qkvlab::dist::size() > 1) qkvlab::dist::abort(status);
  return status;
}

namespace {
int run(int argc, char** argv) {
  CLI::App app{
      "qkvlab: a from-scratch tensor library and autograd engine for the paper \"Do Transformers Need Three "
      "Projections? Systematic Study of QKV Variants\" (ICML 2026). Train and compare attention variants that "
      "share query, key and value projections (QKV, Q-K=V, Q=K-V, Q=K=V, GQA, MQA), look at their attention maps, "
      "and count their KV caches.",
      "qkvlab"};
  app.require_subcommand(1);
  app.footer("Run 'qkvlab COMMAND --help' for the flags of one command.");
  qkvlab::app::register_study(app);
  qkvlab::app::register_train(app);
  qkvlab::app::register_eval(app);
  qkvlab::app::register_generate(app);
  qkvlab::app::register_attention(app);
  qkvlab::app::register_cache(app);
  qkvlab::app::register_gradcheck(app);
  qkvlab::app::register_bench(app);
  qkvlab::app::register_report(app);
  qkvlab::app::check_integer_flags(app);
  try {
    // A mistyped command would otherwise only hear "A subcommand is required".
    if (argc >= 2 && argv[1][0] != '-') {
      std::string names;
      bool known = false;
      for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
        known = known || sub->get_name() == argv[1];
        names += (names.empty() ? "" : ", ") + sub->get_name();
      }
      if (!known) {
        std::fprintf(stderr, "qkvlab: error: unknown command '%s'; valid: %s (see qkvlab --help)\n",
                     one_line(argv[1]).c_str(), names.c_str());
        return 2;
      }
    }
    if (qkvlab::dist::size() > 1 && (argc < 2 || std::string(argv[1]) != "train"))
      qkvlab::fail("only 'train' runs on several MPI ranks; run '", argc < 2 ? "" : argv[1],
                   "' without mpirun (got ", qkvlab::dist::size(), " ranks)");
    app.parse(argc, argv);
    // QKVLAB_PROFILE=1 or --profile: where the time went (autograd/profile.h), on stderr.
    if (std::string t = qkvlab::profile_table(); !t.empty()) std::fputs(t.c_str(), stderr);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::RuntimeError& e) {
    // A command that ends with a chosen exit status and has said what it had to (train after Ctrl-C: 130).
    std::fflush(stdout);
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    // A subcommand's --help throws CallForHelp from inside; CLI11 knows which command asked.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "%s: error: %s (see qkvlab --help)\n", me().c_str(), one_line(e.what()).c_str());
    return 2;
  } catch (const qkvlab::Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", me().c_str(), one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", me().c_str(), one_line(e.what()).c_str());
    return 2;
  }
  return 0;
}
}  // namespace
