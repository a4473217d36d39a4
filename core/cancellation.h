// Cooperative cancellation of long computations. A caller (the server, for a
// call whose client went away or whose deadline passed) installs a check for
// the current thread; core kernels poll it between tiles and stop with
// CANCELLED, freeing what they allocated as they unwind.
#ifndef ATTENTION_CORE_CANCELLATION_H_
#define ATTENTION_CORE_CANCELLATION_H_

#include <functional>

#include "absl/status/status.h"

namespace attention {

using CancellationCheck = std::function<bool()>;

// Installs `check` (which must outlive the scope) for core calls made on
// this thread; scopes nest.
class ScopedCancellation {
 public:
  explicit ScopedCancellation(const CancellationCheck* check);
  ~ScopedCancellation();
  ScopedCancellation(const ScopedCancellation&) = delete;
  ScopedCancellation& operator=(const ScopedCancellation&) = delete;

 private:
  const CancellationCheck* previous_;
};

// The check installed on this thread, or null. Kernels read it on the
// calling thread and share it with their workers.
const CancellationCheck* CurrentCancellation();

// CANCELLED if `check` (may be null) says so, else OK.
absl::Status PollCancellation(const CancellationCheck* check);

}  // namespace attention

#endif  // ATTENTION_CORE_CANCELLATION_H_
