#include "core/process.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace attention {

void RetainFreedHeap(int64_t megabytes) {
  if (megabytes <= 0) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<int64_t>(megabytes, 2047) << 20));
}

int64_t AvailableMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  int64_t bytes = pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (cgroup >> limit && limit != "max") {
    const int64_t n = std::strtoll(limit.c_str(), nullptr, 10);
    if (n > 0 && (bytes == 0 || n < bytes)) bytes = n;
  }
  return bytes;
}

}  // namespace attention
