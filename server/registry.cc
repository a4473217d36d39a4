#include "server/registry.h"

#include "absl/strings/str_cat.h"

namespace attention::server {

LoadedModule MakeLoadedModule(const std::string& name, const ::attention::v1::ModuleConfig& config,
                              std::unique_ptr<AttentionModule> module) {
  LoadedModule loaded;
  loaded.info.set_name(name);
  *loaded.info.mutable_config() = config;
  loaded.info.set_parameter_count(module->parameter_count());
  loaded.info.set_kv_cache_bytes_per_token(module->kv_cache_bytes_per_token());
  loaded.module = std::move(module);
  return loaded;
}

int64_t ModuleBytes(const ModuleConfig& config) { return ParameterBytes(config); }

absl::Status ModuleRegistry::CheckFitsLocked(const std::string& name, int64_t bytes) const {
  if (budget_ <= 0) return absl::OkStatus();
  auto it = modules_.find(name);
  const int64_t freed = it == modules_.end() ? 0 : ModuleBytes(it->second.module->config());
  const int64_t left = budget_ - (bytes_ - freed);
  if (bytes <= left) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "config: the module needs ", bytes >> 20, " MiB of weights; ", (bytes_ - freed) >> 20,
      " of ", budget_ >> 20, " MiB are held by loaded modules (--module_memory_mb)"));
}

absl::Status ModuleRegistry::CheckFits(const std::string& name, int64_t bytes) const {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckFitsLocked(name, bytes);
}

absl::Status ModuleRegistry::Add(const std::string& name, LoadedModule module, bool replace) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(name);
  if (it != modules_.end() && !replace) {
    return absl::AlreadyExistsError(absl::StrCat(
        "name: a module named '", name, "' is already loaded (set replace to overwrite it)"));
  }
  const int64_t bytes = ModuleBytes(module.module->config());
  if (absl::Status s = CheckFitsLocked(name, bytes); !s.ok()) return s;
  if (it != modules_.end()) bytes_ -= ModuleBytes(it->second.module->config());
  bytes_ += bytes;
  modules_[name] = std::move(module);
  return absl::OkStatus();
}

int64_t ModuleRegistry::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
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
  auto it = modules_.find(name);
  if (it == modules_.end()) return NotFound("name", name);
  bytes_ -= ModuleBytes(it->second.module->config());
  modules_.erase(it);
  return absl::OkStatus();
}

std::vector<::attention::v1::ModuleInfo> ModuleRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<::attention::v1::ModuleInfo> out;
  for (const auto& [name, m] : modules_) out.push_back(m.info);
  return out;
}

}  // namespace attention::server
