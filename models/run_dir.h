// Run directories (docs/RELIABILITY.md, "Run directories"): how a training run's files are laid out so that a run is
// never lost, never mixed with another writer's, and always resumable from its last complete checkpoint.
//
//   DIR/.lock                   flock(LOCK_EX) by the one process writing DIR; holds its pid (readers do not lock)
//   DIR/step-N/model.safetensors, DIR/step-N/optimizer.safetensors
//                               one checkpoint: both files of step N, each written to a temporary name, fsynced,
//                               renamed; both carry __metadata__["step"] = N
//   DIR/checkpoint -> step-N    the published checkpoint: a symlink replaced by one atomic rename (checkpoint.tmp
//                               renamed over it), so it names either the previous complete pair or the new one
//   DIR/model.safetensors     -> checkpoint/model.safetensors       fixed relative symlinks: every reader that opens
//   DIR/optimizer.safetensors -> checkpoint/optimizer.safetensors   DIR/model.safetensors keeps working
//   DIR/metrics.jsonl           one JSON object per logged step
// Older step-* folders are removed once a newer checkpoint is published. A directory written by an older qkvlab
// (model.safetensors and optimizer.safetensors as plain files) is read as it is, and takes this layout at its
// next save.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "models/checkpoint.h"

namespace qkvlab {

struct RunInfo {
  bool exists = false;      // DIR is a directory
  bool holds_run = false;   // a checkpoint, a model or optimizer file, a step-* folder or a non-empty metrics.jsonl
  bool checkpoint = false;  // a complete pair (model + optimizer) to resume from
  bool model_only = false;  // model.safetensors without optimizer state (an older build's run, or foreign weights)
  int64_t step = -1;        // the checkpoint's step (from the model's metadata; -1: none or unknown)
  int64_t metrics_step = -1;  // the last step in metrics.jsonl (-1: none)
  std::string model, optimizer;  // the pair's files (when checkpoint or model_only)
  std::string broken;            // non-empty: why the published checkpoint cannot be used
};
RunInfo inspect_run(const std::string& dir);
// "a run with a checkpoint at step 40", "a run without a checkpoint (metrics up to step 12)", ...
std::string describe_run(const RunInfo& info);

// The exclusive writer's lock on DIR/.lock (flock, LOCK_NB): released when the last holder in this process lets go,
// or when the process dies (so a crash never leaves a stale lock). Taking it twice in one process shares it.
// Refused, when another process holds it, with "run directory DIR is in use by process PID ...".
class RunLock;
std::shared_ptr<RunLock> lock_run_dir(const std::string& dir);

// What `train` / `study` may do with an --out directory.
enum class RunMode { New, Resume, Overwrite };
// Before anything is written: refuses DIR when it holds a run and mode is New (one line naming DIR, its last step,
// --resume and --overwrite), and --resume of a directory with no run or with only a model (offering --init-from).
// `cmd` prefixes the messages ("train", "study"). Touches nothing.
RunInfo check_run_dir(const std::string& dir, RunMode mode, const std::string& cmd);
// After DIR exists: takes the lock, checks again (another process may have written DIR meanwhile) and, for
// Overwrite, removes the old run's files (remove_run). Returns the lock; keep it while writing.
std::shared_ptr<RunLock> claim_run_dir(const std::string& dir, RunMode mode, const std::string& cmd);
// Removes a run's files: checkpoint, step-* folders, model/optimizer files and links, metrics.jsonl. Other files
// stay. The caller holds the lock.
void remove_run(const std::string& dir);

// Writes the model and optimizer state of st.step as a new checkpoint and publishes it (the protocol above).
// On failure (disk full, read-only, ...) the previous checkpoint stays published and the half-written step
// folder is removed; the error names the step not saved and the step kept.
void save_checkpoint(const std::string& dir, const TransformerModel& model, const Optimizer& opt,
                     const TrainingState& st);
// --resume: loads DIR's checkpoint into `model` (whose config must be the checkpoint's) and `opt`, checking that
// the two files are of the same step.
TrainingState load_checkpoint(const std::string& dir, TransformerModel& model, Optimizer& opt);

}  // namespace qkvlab
