// The loaded modules, by name. Thread-safe; modules are shared immutable
// objects, so replacing or unloading one lets calls that already hold it
// finish with it.
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

class ModuleRegistry {
 public:
  // ALREADY_EXISTS if `name` is taken and !replace.
  absl::Status Add(const std::string& name, LoadedModule module, bool replace);
  // NOT_FOUND naming the known modules.
  absl::StatusOr<LoadedModule> Get(const std::string& name) const;
  absl::Status Remove(const std::string& name);
  // Sorted by name.
  std::vector<::attention::v1::ModuleInfo> List() const;

 private:
  absl::Status NotFound(const std::string& field, const std::string& name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  std::map<std::string, LoadedModule> modules_ ABSL_GUARDED_BY(mu_);
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_REGISTRY_H_
