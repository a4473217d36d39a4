// Process-wide settings the binaries apply at start.
#ifndef ATTENTION_CORE_PROCESS_H_
#define ATTENTION_CORE_PROCESS_H_

#include <cstdint>

namespace attention {

// glibc maps every large buffer afresh (tensors, protobuf's byte strings,
// gRPC's receive buffers) and unmaps it on free, so a process that moves
// megabytes per call page-faults them in again on every call (measured at
// 40% of a 4 MiB Forward's time in the server). This keeps buffers up to
// 32 MiB (glibc's largest mmap threshold) on the heap and up to `megabytes`
// of freed heap for reuse. 0 leaves glibc's defaults.
void RetainFreedHeap(int64_t megabytes);

// Memory this process may use: the machine's physical memory, or the
// cgroup's limit (memory.max, cgroup v2) when that is lower, as in a
// container. 0 when neither can be read.
int64_t AvailableMemoryBytes();

}  // namespace attention

#endif  // ATTENTION_CORE_PROCESS_H_
