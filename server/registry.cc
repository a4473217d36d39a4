#include "server/registry.h"

#include "absl/strings/str_cat.h"

namespace attention::server {

absl::Status ModuleRegistry::Add(const std::string& name, LoadedModule module, bool replace) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(name);
  if (it != modules_.end() && !replace) {
    return absl::AlreadyExistsError(absl::StrCat(
        "name: a module named '", name, "' is already loaded (set replace to overwrite it)"));
  }
  modules_[name] = std::move(module);
  return absl::OkStatus();
}

absl::Status ModuleRegistry::NotFound(const std::string& field, const std::string& name) const {
  std::string known;
  for (const auto& [n, m] : modules_) absl::StrAppend(&known, known.empty() ? "" : ", ", n);
  return absl::NotFoundError(absl::StrCat(field, ": no module named '", name,
                                          "' is loaded (loaded: ", known.empty() ? "none" : known,
                                          ")"));
}

absl::StatusOr<LoadedModule> ModuleRegistry::Get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(name);
  if (it == modules_.end()) return NotFound("module", name);
  return it->second;
}

absl::Status ModuleRegistry::Remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (modules_.erase(name) == 0) return NotFound("name", name);
  return absl::OkStatus();
}

std::vector<::attention::v1::ModuleInfo> ModuleRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<::attention::v1::ModuleInfo> out;
  for (const auto& [name, m] : modules_) out.push_back(m.info);
  return out;
}

}  // namespace attention::server
