// The loops: elementwise sweeps and fixed-block reductions over a Batch, templated on rule
// and dtype.  Included by kernels.cpp only, which is compiled once per instruction set.
//
// Work is cut into items of at most kChunk elements of one array; threads take items one at a
// time from a shared counter (pool.hpp), so one huge array and many tiny ones balance alike.
// Reductions sum each item with kLanes partial sums and join the items of an array in order: the result does not depend on the thread count or the vector width.
//
// Like rules.hpp, everything here lives in the instruction set's namespace, and no standard
// library template is instantiated (the linker would keep one target's copy for all).
#pragma once
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>  // the 8-bit codes' vector paths (lean.hpp); always inlined, so no symbol is shared
#endif

#include "pool.hpp"
#include "rules.hpp"
#include "types.hpp"

namespace fastopt {
namespace FASTOPT_ISA_NS {

constexpr int64_t kChunk = 1 << 14;        // elements per work item and per reduction block
constexpr int64_t kParallelMin = 1 << 16;  // fewer elements in all than this: one thread (pool.hpp, parallel_min)
constexpr int kLanes = 16;                 // partial sums per reduction block

struct Item {
  int64_t array, start, len;
};

// A zero-filled heap array (the step's only allocations: the plan and per-item partials).
template <class V>
struct Buffer {
  V* data;
  explicit Buffer(int64_t n) : data(new V[n > 0 ? n : 1]()) {}
  ~Buffer() { delete[] data; }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  V& operator[](int64_t i) { return data[i]; }
  const V& operator[](int64_t i) const { return data[i]; }
};

inline int64_t count_items(const Batch& b) {
  int64_t n = 0;
  for (int64_t a = 0; a < b.count; ++a) n += (b.sizes[a] + kChunk - 1) / kChunk;
  return n;
}

struct Plan {
  int64_t n;
  Buffer<Item> items;
  int64_t total = 0;

  explicit Plan(const Batch& b) : n(count_items(b)), items(n) {
    int64_t k = 0;
    for (int64_t a = 0; a < b.count; ++a)
      for (int64_t s = 0; s < b.sizes[a]; s += kChunk, ++k) {
        const int64_t len = b.sizes[a] - s < kChunk ? b.sizes[a] - s : kChunk;
        items[k] = {a, s, len};
        total += len;
      }
  }
  int64_t size() const { return n; }
};

// Items are cut into one run of consecutive items per thread, of about equal elements.  A thread
// walks its own run first, in order (one stream through memory per array, as a static split
// gives), then helps finish the others' (a thread the OS delays, or one that never starts, holds
// up no fixed share: the others take its items).  Handing out one item at a time from a single
// counter instead, so that the threads' items interleave, made the 64M-element 8-bit step and its
// probe 3-9% slower on 2 cores, the float32 and bfloat16 steps 0-5% (medians of paired rounds,
// the README's Threads).  The result does not depend on which thread ran an item.
constexpr int kMaxRuns = 64;
template <class F>
void for_items(const Plan& plan, int nt, F&& f) {
  if (nt <= 1 || plan.total < parallel_min(kParallelMin) || plan.size() < 2) {
    for (int64_t i = 0; i < plan.size(); ++i) f(i);
    return;
  }
  if (nt > plan.size()) nt = int(plan.size());
  struct alignas(64) Run {
    int64_t next, end;
  };
  struct Shared {
    F* f;
    int runs;
    int entered;
    Run run[kMaxRuns];
  } shared;
  shared.f = &f;
  shared.runs = nt < kMaxRuns ? nt : kMaxRuns;
  shared.entered = 0;
  // Runs of about equal elements (the items of small arrays are short): run r starts at the
  // first item that starts at or after r / runs of the elements.
  const int64_t n = plan.size(), runs = shared.runs;
  int r = 1;
  shared.run[0].next = 0;
  for (int64_t i = 0, done = 0; i < n && r < runs; ++i) {
    done += plan.items[i].len;
    for (; r < runs && done * runs >= plan.total * r; ++r) shared.run[r].next = i + 1;
  }
  for (; r < runs; ++r) shared.run[r].next = n;
  for (r = 0; r < runs; ++r) shared.run[r].end = r + 1 < runs ? shared.run[r + 1].next : n;
  parallel_run(nt, [](void* ctx) {
    auto& s = *static_cast<Shared*>(ctx);
    const int first = __atomic_fetch_add(&s.entered, 1, __ATOMIC_RELAXED) % s.runs;
    for (int k = 0; k < s.runs; ++k) {
      Run& r = s.run[(first + k) % s.runs];
      for (int64_t i; (i = __atomic_fetch_add(&r.next, 1, __ATOMIC_RELAXED)) < r.end;) (*s.f)(i);
    }
  }, &shared);
}

template <class T>
inline T* slot_ptr(const Batch& b, int slot, const Item& it) {
  return b.slot[slot] ? static_cast<T*>(b.slot[slot][it.array]) + it.start : nullptr;
}

// ---- elementwise sweeps ------------------------------------------------------------------
// The loops copy the rule and the pre-processing to locals first: fields of a struct behind
// a reference might alias the arrays, and their loads would stay in the loop (and stop it
// from vectorizing).

template <class T, int MODE, class Rule>
FASTOPT_ELEMENT void sweep_element(const Rule& r, const Pre<T>& pre, T* __restrict p, const T* __restrict g,
                                   T* __restrict s0, T* __restrict s1, T* __restrict s2, int64_t i) {
  T gi = g[i];
  if constexpr (MODE != kNoPre) gi = pre.template apply<MODE == kPrePenalty>(gi, p[i]);
  T d1 = T(0), d2 = T(0), d3 = T(0);  // stand-ins for the state a rule does not have
  if constexpr (Rule::nstate == 0) r(p[i], gi, d1, d2, d3);
  else if constexpr (Rule::nstate == 1) r(p[i], gi, s0[i], d2, d3);
  else if constexpr (Rule::nstate == 2) r(p[i], gi, s0[i], s1[i], d3);
  else r(p[i], gi, s0[i], s1[i], s2[i]);
}

template <class T, int MODE, class Rule>
__attribute__((noinline)) void sweep_range(const Rule& rule, const Pre<T>& pre_in, T* __restrict p, const T* __restrict g,
                        T* __restrict s0, T* __restrict s1, T* __restrict s2, int64_t n) {
  const Rule r = rule;
  const Pre<T> pre = pre_in;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) sweep_element<T, MODE>(r, pre, p, g, s0, s1, s2, i);
}

// ---- 4K aliasing ---------------------------------------------------------------------------
// A load waits on an older store still in flight whose address has the same low 12 bits (it
// cannot tell them apart until the store's full address is checked).  A loop walking up the
// arrays then stalls on every vector where an array it stores starts a little above, modulo
// 4 KiB, an array it loads: each load of the next elements meets the store just issued.
// Measured on a 16-core Intel Xeon, one thread, 4M float32 elements: Adam at 33-38% of the probe
// and SGD at 51-62% with the gradient 16-64 bytes below the parameters modulo 4 KiB, and 70-77%
// with a state 16-64 bytes above the gradient, against 96-106% with the gradient 0-128 bytes
// above the parameters.  NumPy places consecutive arrays 16 bytes apart where it reuses freed
// memory.  Walking down the arrays turns the condition around: such a range, if no pair of its
// arrays would stall walking down, is walked down one vector at a time (there: 87-108%).  Where
// pairs would stall either way (arrays 16 bytes apart in a row, measured) walking down was
// slower, so those ranges walk up.  The 2-core AMD EPYC shows no such stall, and walking down
// ran 15-25% slower there: the walk down is for Intel CPUs only (dispatch.cpp).
#if defined(__AVX512F__)
constexpr int64_t kVectorBytes = 64;
#elif defined(__AVX2__)
constexpr int64_t kVectorBytes = 32;
#else
constexpr int64_t kVectorBytes = 16;
#endif
constexpr uintptr_t kAliasWindow = 128;  // bytes: a stored array this little above a loaded one stalls

// Pairs (array stored, other array loaded) whose starts would stall a walk up (down: a walk down).
inline int alias_pairs(const void* const* arrays, int n, bool down) {
  int pairs = 0;
  for (int x = 0; x < n; ++x)  // stored: the parameters and the states (every array but the gradient, 1)
    for (int y = 0; y < n; ++y) {
      if (x == 1 || y == x || !arrays[x] || !arrays[y]) continue;
      const uintptr_t ox = reinterpret_cast<uintptr_t>(arrays[x]), oy = reinterpret_cast<uintptr_t>(arrays[y]);
      const uintptr_t d = ((down ? oy - ox : ox - oy)) & 4095;
      pairs += d != 0 && d < kAliasWindow;
    }
  return pairs;
}

// The same as sweep_range, walking from the end one vector at a time (the element order inside
// a vector does not matter: the rules are elementwise, so the results are the same bits).
template <class T, int MODE, class Rule>
__attribute__((noinline)) void sweep_range_down(const Rule& rule, const Pre<T>& pre_in, T* __restrict p,
                                                const T* __restrict g, T* __restrict s0, T* __restrict s1,
                                                T* __restrict s2, int64_t n) {
  const Rule r = rule;
  const Pre<T> pre = pre_in;
  constexpr int64_t V = kVectorBytes / int64_t(sizeof(T));
  int64_t i = n;
  for (; i >= V; i -= V) {
    const int64_t b = i - V;
#pragma omp simd
    for (int64_t j = b; j < b + V; ++j) sweep_element<T, MODE>(r, pre, p, g, s0, s1, s2, j);
  }
  for (int64_t j = i - 1; j >= 0; --j) sweep_element<T, MODE>(r, pre, p, g, s0, s1, s2, j);
}

template <class T, int MODE, class Rule>
inline void sweep_item(const Rule& r, const Pre<T>& pre, T* p, const T* g, T* s0, T* s1, T* s2, int64_t n) {
  const void* arrays[5] = {p, g, s0, s1, s2};
  if (n * int64_t(sizeof(T)) >= 4096 && alias_walk() && alias_pairs(arrays, 5, false) > 0 &&
      alias_pairs(arrays, 5, true) == 0) {
    sweep_range_down<T, MODE>(r, pre, p, g, s0, s1, s2, n);
    count_down_walk();
  } else
    sweep_range<T, MODE>(r, pre, p, g, s0, s1, s2, n);
}

template <class Rule>
void lean_sweep(const Batch& b, const Rule& rule, const PreHyper& ph, int nt);  // lean.hpp

template <class T, class Rule>
void sweep(const Batch& b, const Rule& r, const PreHyper& ph, int nt) {
  if constexpr (sizeof(T) == 4) {
    if (b.lean) return lean_sweep(b, r, ph, nt);  // bfloat16, float16 or 8-bit arrays around float32 math
  }
  const Plan plan(b);
  const Pre<T> pre(ph);
  const PreMode mode = pre_mode(ph);
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    T* p = slot_ptr<T>(b, 0, it);
    const T* g = slot_ptr<T>(b, 1, it);
    T* s0 = slot_ptr<T>(b, 2, it);
    T* s1 = slot_ptr<T>(b, 3, it);
    T* s2 = slot_ptr<T>(b, 4, it);
    if (mode == kNoPre) sweep_item<T, kNoPre>(r, pre, p, g, s0, s1, s2, it.len);
    else if (mode == kPre) sweep_item<T, kPre>(r, pre, p, g, s0, s1, s2, it.len);
    else sweep_item<T, kPrePenalty>(r, pre, p, g, s0, s1, s2, it.len);
  });
}

// Gradients changed in place by the pre-processing alone (scale, clip, penalty gradient).
template <class T, bool WITH_PARAMS>
__attribute__((noinline)) void transform_range(const Pre<T>& pre_in, T* __restrict g, const T* __restrict p, int64_t n) {
  const Pre<T> pre = pre_in;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) g[i] = pre.template apply<WITH_PARAMS>(g[i], WITH_PARAMS ? p[i] : T(0));
}

template <class T>
void transform(const Batch& b, const PreHyper& ph, bool with_params, int nt) {
  const Plan plan(b);
  const Pre<T> pre(ph);
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    T* g = slot_ptr<T>(b, 1, it);
    if (with_params) transform_range<T, true>(pre, g, slot_ptr<T>(b, 0, it), it.len);
    else transform_range<T, false>(pre, g, nullptr, it.len);
  });
}

// ---- fixed-block reductions --------------------------------------------------------------

// The element types a reduction reads, widened exactly to double.
struct Bf16Bits {
  uint16_t bits;
};
inline double widen(float x) { return x; }
inline double widen(double x) { return x; }
inline double widen(_Float16 x) { return double(float(x)); }
inline double widen(Bf16Bits x) {
  const uint32_t u = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct SumJoin {
  static double join(double a, double b) { return a + b; }
};
struct MaxJoin {
  static double join(double a, double b) { return nan_max(a, b); }
};

// Combine kLanes partial results in a fixed tree.
template <class Join>
inline double fold_lanes(double* acc) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] = Join::join(acc[k], acc[k + w]);
  return acc[0];
}

// Running results over n elements, element i going to partial sum i % kLanes.
// f(i) is element i's contribution.
template <class Join, class F>
inline double lane_reduce(int64_t n, F f) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) acc[k] = Join::join(acc[k], f(j + k));
  }
  for (int k = 0; j + k < n; ++k) acc[k] = Join::join(acc[k], f(j + k));
  return fold_lanes<Join>(acc);
}

// Join the per-item results of each array in item order: per_array[a] for every array.
template <class Join>
inline void join_items(const Plan& plan, const double* item_val, int stride, int q, int64_t count,
                       double* per_array) {
  for (int64_t a = 0; a < count; ++a) per_array[a] = 0.0;
  for (int64_t i = 0; i < plan.size(); ++i) {
    double& acc = per_array[plan.items[i].array];
    acc = Join::join(acc, item_val[i * stride + q]);
  }
}

template <class T, class Join, class Map>
void reduce_with(const Batch& b, int slot, int nt, double* per_array, Map map) {
  const Plan plan(b);
  Buffer<double> item_val(plan.size());
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    const T* __restrict x = slot_ptr<T>(b, slot, it);
    item_val[k] = lane_reduce<Join>(it.len, [&](int64_t i) { return map(widen(x[i])); });
  });
  join_items<Join>(plan, item_val.data, 1, 0, b.count, per_array);
}

template <class T>
void reduce(const Batch& b, int slot, Reduce kind, double power, int nt, double* per_array) {
  switch (kind) {
    case Reduce::SumAbs: return reduce_with<T, SumJoin>(b, slot, nt, per_array, [](double x) { return std::fabs(x); });
    case Reduce::SumSq: return reduce_with<T, SumJoin>(b, slot, nt, per_array, [](double x) { return x * x; });
    case Reduce::MaxAbs: return reduce_with<T, MaxJoin>(b, slot, nt, per_array, [](double x) { return std::fabs(x); });
    case Reduce::SumPow:
      return reduce_with<T, SumJoin>(b, slot, nt, per_array, [power](double x) { return std::pow(std::fabs(x), power); });
    case Reduce::NonFinite:  // x - x is 0 for finite x and NaN otherwise
      return reduce_with<T, SumJoin>(b, slot, nt, per_array, [](double x) { return x - x; });
  }
}

// ---- LAMB: moments and norms in one pass, then the trust-scaled update ------------------

// LAMB's first pass over one item: moments updated, sums of p^2 and r^2 by lane as lane_reduce.
template <class T, int MODE>
__attribute__((noinline)) void lamb_moments(const LambRule<T>& rule, const Pre<T>& pre_in, const T* __restrict p,
                                            const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                                            double* out2) {
  const LambRule<T> r = rule;
  const Pre<T> pre = pre_in;
  double acc_p[kLanes] = {}, acc_r[kLanes] = {};
  auto element = [&](int64_t i, int k) {
    T gi = g[i];
    if constexpr (MODE != kNoPre) gi = pre.template apply<MODE == kPrePenalty>(gi, p[i]);
    const double d = double(r.moments(p[i], gi, m[i], v[i]));
    acc_p[k] += double(p[i]) * double(p[i]);
    acc_r[k] += d * d;
  };
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) element(j + k, k);
  }
  for (int k = 0; j + k < n; ++k) element(j + k, k);
  out2[0] = fold_lanes<SumJoin>(acc_p);
  out2[1] = fold_lanes<SumJoin>(acc_r);
}

template <class T>
void lamb_group(const Batch& b, const LambHyper& h, const PreHyper& ph, int nt) {
  const Plan plan(b);
  const LambRule<T> r(h);
  const Pre<T> pre(ph);
  const PreMode mode = pre_mode(ph);
  Buffer<double> item_val(2 * plan.size());
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    const T* p = slot_ptr<T>(b, 0, it);
    const T* g = slot_ptr<T>(b, 1, it);
    T* m = slot_ptr<T>(b, 2, it);
    T* v = slot_ptr<T>(b, 3, it);
    if (mode == kNoPre) lamb_moments<T, kNoPre>(r, pre, p, g, m, v, it.len, &item_val[2 * k]);
    else if (mode == kPre) lamb_moments<T, kPre>(r, pre, p, g, m, v, it.len, &item_val[2 * k]);
    else lamb_moments<T, kPrePenalty>(r, pre, p, g, m, v, it.len, &item_val[2 * k]);
  });
  Buffer<double> p_sq(b.count), r_sq(b.count);
  join_items<SumJoin>(plan, item_val.data, 2, 0, b.count, p_sq.data);
  join_items<SumJoin>(plan, item_val.data, 2, 1, b.count, r_sq.data);
  Buffer<T> coef(b.count);
  const double decay = h.decoupled ? 1.0 - h.lr * h.weight_decay : 1.0;  // Keras' decoupled decay
  for (int64_t a = 0; a < b.count; ++a)
    coef[a] = T(-h.lr * LambRule<T>::trust(std::fabs(decay) * std::sqrt(p_sq[a]), std::sqrt(r_sq[a])));
  const T d = T(decay);
  const bool decoupled = h.decoupled && h.weight_decay != 0.0;
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    T* __restrict p = slot_ptr<T>(b, 0, it);
    const T* __restrict m = slot_ptr<T>(b, 2, it);
    const T* __restrict v = slot_ptr<T>(b, 3, it);
    const T c = coef[it.array];
    const LambRule<T> rule = r;
    if (decoupled) {
#pragma omp simd
      for (int64_t i = 0; i < it.len; ++i) p[i] = p[i] * d + c * rule.direction(p[i], m[i], v[i]);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < it.len; ++i) p[i] = p[i] + c * rule.direction(p[i], m[i], v[i]);
    }
  });
}

// Arrays [a0, a1) of b.
inline Batch sub_batch(const Batch& b, int64_t a0, int64_t a1) {
  Batch s = b;
  s.count = a1 - a0;
  s.sizes = b.sizes + a0;
  for (auto& slot : s.slot)
    if (slot) slot += a0;
  return s;
}

// LAMB walks the arrays in groups of consecutive ones whose parameters and moments take at most
// kLambGroupBytes (an array larger than that alone), both passes over one group before the next,
// so that the second pass finds them in cache where the group fits (a list of many arrays, as a
// network's).  Norms and updates are per array, so the grouping changes no bit.
#ifndef FASTOPT_LAMB_GROUP
#define FASTOPT_LAMB_GROUP (8 << 20)
#endif
constexpr int64_t kLambGroupBytes = FASTOPT_LAMB_GROUP;
template <class T>
void lamb(const Batch& b, const LambHyper& h, const PreHyper& ph, int nt) {
  const int64_t per = 3 * int64_t(sizeof(T));
  for (int64_t a0 = 0, a1; a0 < b.count; a0 = a1) {
    int64_t bytes = b.sizes[a0] * per;
    for (a1 = a0 + 1; a1 < b.count && bytes + b.sizes[a1] * per <= kLambGroupBytes; ++a1) bytes += b.sizes[a1] * per;
    lamb_group<T>(sub_batch(b, a0, a1), h, ph, nt);
  }
}

}  // namespace FASTOPT_ISA_NS
}  // namespace fastopt

#include "lean.hpp"
