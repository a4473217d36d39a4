#include "core/cancellation.h"

namespace attention {
namespace {

thread_local const CancellationCheck* current = nullptr;

}  // namespace

ScopedCancellation::ScopedCancellation(const CancellationCheck* check) : previous_(current) {
  current = check;
}

ScopedCancellation::~ScopedCancellation() { current = previous_; }

const CancellationCheck* CurrentCancellation() { return current; }

absl::Status PollCancellation(const CancellationCheck* check) {
  if (check != nullptr && (*check)()) {
    return absl::CancelledError("cancelled: the computation was stopped between tiles");
  }
  return absl::OkStatus();
}

}  // namespace attention
