#include "core/process.h"

#include <malloc.h>

#include <algorithm>

namespace attention {

void RetainFreedHeap(int64_t megabytes) {
  if (megabytes <= 0) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<int64_t>(megabytes, 2047) << 20));
}

}  // namespace attention
