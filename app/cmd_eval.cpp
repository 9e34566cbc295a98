// qkvlab eval: loss / perplexity / accuracy of a checkpoint on its task's held-out data, or on --data FILE
// (LM: consecutive windows of context+1 bytes from the start of the file, docs/DESIGN.md section 7).
#include <nlohmann/json.hpp>

#include "app/model_flags.h"
#include "models/data.h"

namespace qkvlab::app {

namespace {
struct EvalArgs {
  CommonFlags common;
  std::string ckpt, data, data_dir = kFashionMnistDir;
  int64_t max_examples = 0, batch = 32;
};

void run(const EvalArgs& a) {
  apply_common_flags(a.common);
  check(a.batch > 0, "eval: --batch must be positive, got ", a.batch);
  check(a.max_examples >= 0, "eval: --max-examples must be >= 0 (0 = all), got ", a.max_examples);
  auto model = load_model(a.ckpt);
  const ModelConfig& cfg = model->config();
  EvalResult r;
  std::string on;
  if (cfg.task == "lm") {
    // Without --data: the corpus the checkpoint was trained on (its config's "data"), whole.
    const std::string path = a.data.empty() ? cfg.data : a.data;
    check(!path.empty(), "eval: this LM checkpoint does not record its corpus: pass --data FILE");
    std::string text = read_corpus(path);
    check(!text.empty(), "eval: --data ", path, " is empty");
    ByteTokenizer tok = ByteTokenizer::from_vocab(cfg.vocab);
    std::vector<Batch> batches = eval_windows(tok.encode(text), cfg.context, a.batch, a.max_examples);
    NoGradGuard no_grad;
    model->eval();
    double loss = 0, correct = 0;
    int64_t targets = 0, windows = 0;
    for (const Batch& b : batches) {
      StepResult s = model_loss(*model, b.x, b.y);
      loss += s.loss.item() * double(b.y.numel());
      correct += s.accuracy * double(b.y.numel());
      targets += b.y.numel();
      windows += b.x.size(0);
    }
    r.loss = loss / double(targets);
    r.accuracy = correct / double(targets);
    r.examples = windows;
    on = path + " (" + std::to_string(windows) + " windows of " + std::to_string(cfg.context + 1) + " bytes)";
  } else {
    // --data would be silently ignored: the score would not be of the file the user named.
    check(a.data.empty(), "eval: --data is for LM checkpoints; ", a.ckpt, " is a ", cfg.task,
          " model, scored on its task's test set (", cfg.task == "fmnist" ? "--data-dir" : "--seed", ")");
    TaskOptions t;
    t.data_dir = a.data_dir;
    t.seed = a.common.seed;
    auto data = make_task_for(cfg, t);
    r = data->evaluate(*model, a.max_examples);
    on = data->name() + " test set (" + std::to_string(r.examples) + " examples" +
         (cfg.task == "fmnist" ? "" : ", generated with --seed " + std::to_string(a.common.seed)) + ")";
  }
  if (a.common.json) {
    nlohmann::ordered_json j{{"checkpoint", a.ckpt},     {"task", cfg.task},       {"variant", cfg.variant.id()},
                             {"loss", r.loss},           {"perplexity", r.perplexity()}, {"accuracy", r.accuracy},
                             {"examples", r.examples}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s (%s) on %s\nloss %.4f  perplexity %.4f  accuracy %.4f\n", cfg.variant.id().c_str(),
                cfg.variant.paper_name().c_str(), on.c_str(), r.loss, r.perplexity(), r.accuracy);
  }
}
}  // namespace

void register_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Loss, perplexity and accuracy of a checkpoint");
  cmd->add_option("--ckpt", args->ckpt, "run directory or model.safetensors")->required();
  cmd->add_option("--data", args->data, "LM: the text file (or folder) to score, in consecutive windows of context+1 "
                                             "bytes (default: the corpus the checkpoint was trained on)");
  cmd->add_option("--data-dir", args->data_dir, "fmnist: the folder with the IDX files")
      ->default_val(kFashionMnistDir);
  cmd->add_option("--max-examples", args->max_examples, "score only the first N windows / sequences (0 = all)")
      ->default_val(0);
  cmd->add_option("--batch", args->batch, "windows per forward pass")->default_val(32);
  add_common_flags(cmd, args->common);
  cmd->callback([args] { run(*args); });
}

}  // namespace qkvlab::app
