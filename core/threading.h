// The compute thread pool of core/ (OpenMP, shared with oneDNN).
#ifndef ATTENTION_CORE_THREADING_H_
#define ATTENTION_CORE_THREADING_H_

namespace attention {

// Sets the number of threads parallel kernels use (>= 1). Call once at start.
void SetComputeThreads(int threads);
int ComputeThreads();

// Does now, once per process, what the first call would otherwise pay for:
// oneDNN's JIT sgemm kernels (about 40 ms) and the ISA choice of our own
// kernels. Servers call it before they accept calls.
void WarmUp();

// The oneDNN version string, e.g. "2.6.3", and the CPU ISA it dispatches to.
const char* OneDnnVersion();
const char* CpuIsa();

}  // namespace attention

#endif  // ATTENTION_CORE_THREADING_H_
