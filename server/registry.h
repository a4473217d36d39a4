// The loaded modules, by name, within a memory budget (--module_memory_mb).
// Thread-safe; modules are shared immutable objects, so replacing or
// unloading one lets calls that already hold it finish with it (its memory
// leaves the budget at once, and the process when the last call ends).
#ifndef ATTENTION_SERVER_REGISTRY_H_
#define ATTENTION_SERVER_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include <mutex>
#include "attention/v1/attention.pb.h"
#include "core/module.h"

namespace attention::server {

struct LoadedModule {
  std::shared_ptr<const AttentionModule> module;
  ::attention::v1::ModuleInfo info;  // config echoed as given
};

// `module` named `name`, with its ModuleInfo (`config` echoed as given).
LoadedModule MakeLoadedModule(const std::string& name, const ::attention::v1::ModuleConfig& config,
                              std::unique_ptr<AttentionModule> module);

// Bytes a module of `config` holds: its parameters as held (ParameterBytes).
int64_t ModuleBytes(const ModuleConfig& config);

class ModuleRegistry {
 public:
  // `memory_budget` bytes for all modules together; 0: no limit.
  explicit ModuleRegistry(int64_t memory_budget = 0) : budget_(memory_budget) {}

  // RESOURCE_EXHAUSTED naming --module_memory_mb unless a module of `bytes`
  // would fit beside the loaded ones (less the one named `name`, which a
  // replace frees). A check before building a module; Add checks again.
  absl::Status CheckFits(const std::string& name, int64_t bytes) const;
  // ALREADY_EXISTS if `name` is taken and !replace; RESOURCE_EXHAUSTED as
  // CheckFits.
  absl::Status Add(const std::string& name, LoadedModule module, bool replace);
  // NOT_FOUND naming the known modules.
  absl::StatusOr<LoadedModule> Get(const std::string& name) const;
  absl::Status Remove(const std::string& name);
  // Sorted by name.
  std::vector<::attention::v1::ModuleInfo> List() const;

  int64_t memory_budget() const { return budget_; }
  // Bytes of the loaded modules.
  int64_t memory_bytes() const;

 private:
  absl::Status NotFound(const std::string& field, const std::string& name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status CheckFitsLocked(const std::string& name, int64_t bytes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const int64_t budget_;
  mutable std::mutex mu_;
  std::map<std::string, LoadedModule> modules_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_REGISTRY_H_
