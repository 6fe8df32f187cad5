// The table of kernel pointers, one table per instruction set, and the choice among them.
#pragma once
#include <string>
#include <vector>

#include "types.hpp"

namespace fastopt {

// name, hyperparameter struct: one update kernel each.
#define FASTOPT_RULES(X)   \
  X(gd, GdHyper)           \
  X(sgd, SgdHyper)         \
  X(adam, AdamHyper)       \
  X(adagrad, AdagradHyper) \
  X(rmsprop, RmspropHyper) \
  X(adadelta, AdadeltaHyper) \
  X(adamax, AdamaxHyper)   \
  X(nadam, NadamHyper)     \
  X(radam, RadamHyper)     \
  X(lion, LionHyper)       \
  X(lamb, LambHyper)       \
  X(stream, StreamHyper)

// Every entry is indexed by DType (0 float32, 1 float64).
struct KernelTable {
  const char* name;
#define FASTOPT_FIELD(name, H) void (*name[2])(const Batch&, const H&, const PreHyper&, int nthreads);
  FASTOPT_RULES(FASTOPT_FIELD)
#undef FASTOPT_FIELD
  // per_array[a] = the reduction of array a of the given slot (float32, float64, bfloat16, float16).
  void (*reduce[4])(const Batch&, int slot, Reduce kind, double power, int nthreads, double* per_array);
  // gradients (slot 1) <- pre(gradients, params), params read only when with_params.
  void (*transform[2])(const Batch&, const PreHyper&, bool with_params, int nthreads);
  // The fused layer passes of layers.hpp (one thread; z, d, a, dz: C-contiguous rows x cols).
  void (*bias_act[2])(void* z, const void* b, int64_t rows, int64_t cols, int act);
  void (*act_backward[2])(void* d, const void* a, int64_t n, int act);
  // 8-bit blockwise state (lean.hpp): n float32 values to codes and per-block absmax, and back.
  void (*quantize_8bit)(const float* x, int64_t n, bool nonneg, uint8_t* codes, float* absmax);
  void (*dequantize_8bit)(const uint8_t* codes, const float* absmax, int64_t n, bool nonneg, float* out);
  void (*softmax_xent[2])(const void* z, const int64_t* y, void* dz, int64_t rows, int64_t cols, double scale,
                          double* out);
};

// Instruction sets this build holds, lowest first ("baseline", "avx2", "avx512").
std::vector<std::string> compiled_isas();
// Instruction sets this build holds that this CPU (and OS) can run.
std::vector<std::string> supported_isas();
// The table in use; chosen at start-up from FASTOPT_ISA (if set) or the best supported.
const KernelTable& kernels();
// Use the named instruction set; throws std::invalid_argument if unknown or unsupported.
void set_isa(const std::string& name);
// Whether 8-bit state and stochastic rounding take their direct paths (lean.hpp) or the buffered
// one (the same bits; the switch lets tests and benchmarks compare them).  Returns the old setting.
bool set_direct_lean(bool on);
bool direct_lean_off();
// Calls that took the 8-bit direct path since the module loaded (tests check the dispatch with it).
void count_q8_direct();
int64_t q8_direct_calls();
// Whether elementwise sweeps walk a range down where its arrays would stall on 4K aliasing walking
// up (kernels.hpp): by default on Intel CPUs only (FASTOPT_ALIAS_WALK=1 or 0 overrides).  Returns
// the old setting.
bool set_alias_walk(bool on);
bool alias_walk();
// Ranges an elementwise sweep walked down to keep clear of 4K aliasing (kernels.hpp; a test hook).
void count_down_walk();
int64_t down_walks();

}  // namespace fastopt
