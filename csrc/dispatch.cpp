#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace fastopt {

#define FASTOPT_DECLARE_TABLE(isa) \
  namespace isa {                  \
  extern const KernelTable table;  \
  }
#ifdef FASTOPT_HAVE_BASELINE
FASTOPT_DECLARE_TABLE(baseline)
#endif
#ifdef FASTOPT_HAVE_AVX2
FASTOPT_DECLARE_TABLE(avx2)
#endif
#ifdef FASTOPT_HAVE_AVX512
FASTOPT_DECLARE_TABLE(avx512)
#endif

namespace {

struct Target {
  const KernelTable* table;
  bool (*runs_here)();
};

bool always() { return true; }
#if defined(__x86_64__) || defined(_M_X64)
// x86-64-v3 and -v4 as the compiler targets them (-march=x86-64-v3 may emit BMI, LZCNT, MOVBE).
bool has_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
         __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("lzcnt") &&
         __builtin_cpu_supports("movbe");
}
bool has_v4() {
  return has_v3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}
#endif

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
#ifdef FASTOPT_HAVE_BASELINE
      {&baseline::table, always},
#endif
#ifdef FASTOPT_HAVE_AVX2
      {&avx2::table, has_v3},
#endif
#ifdef FASTOPT_HAVE_AVX512
      {&avx512::table, has_v4},
#endif
  };
  return all;
}

const KernelTable* find_supported(const std::string& name) {
  for (const Target& t : targets())
    if (name == t.table->name) {
      if (!t.runs_here()) throw std::invalid_argument("instruction set '" + name + "' is not supported by this CPU");
      return t.table;
    }
  throw std::invalid_argument("unknown instruction set '" + name + "'");
}

const KernelTable* initial_table() {
  const char* forced = std::getenv("FASTOPT_ISA");
  if (forced && *forced) {
    try {
      return find_supported(forced);
    } catch (const std::invalid_argument&) {
      // Falls through to the best supported; the Python layer warns about the ignored value.
    }
  }
  const KernelTable* best = nullptr;
  for (const Target& t : targets())
    if (t.runs_here()) best = t.table;
  return best;
}

std::atomic<const KernelTable*> g_table{nullptr};

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const Target& t : targets()) out.push_back(t.table->name);
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const Target& t : targets())
    if (t.runs_here()) out.push_back(t.table->name);
  return out;
}

const KernelTable& kernels() {
  const KernelTable* t = g_table.load(std::memory_order_acquire);
  if (!t) {
    t = initial_table();
    g_table.store(t, std::memory_order_release);
  }
  return *t;
}

void set_isa(const std::string& name) { g_table.store(find_supported(name), std::memory_order_release); }

namespace {
std::atomic<bool> g_direct_lean_off{false};
std::atomic<int64_t> g_q8_direct_calls{0};
std::atomic<int64_t> g_down_walks{0};

// Intel CPUs stall on 4K aliasing where the AMD EPYC measured does not, and there walking down ran
// 15-25% slower: on by default on Intel only.  FASTOPT_ALIAS_WALK=1 or 0 overrides.
int alias_walk_default() {
  const char* env = std::getenv("FASTOPT_ALIAS_WALK");
  if (env && (env[0] == '0' || env[0] == '1') && env[1] == '\0') return env[0] - '0';
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_is("intel") ? 1 : 0;
#else
  return 0;
#endif
}
std::atomic<int> g_alias_walk{alias_walk_default()};
}
bool set_direct_lean(bool on) { return !g_direct_lean_off.exchange(!on, std::memory_order_relaxed); }
bool direct_lean_off() { return g_direct_lean_off.load(std::memory_order_relaxed); }
void count_q8_direct() { g_q8_direct_calls.fetch_add(1, std::memory_order_relaxed); }
int64_t q8_direct_calls() { return g_q8_direct_calls.load(std::memory_order_relaxed); }
bool set_alias_walk(bool on) { return g_alias_walk.exchange(on ? 1 : 0, std::memory_order_relaxed) != 0; }
bool alias_walk() { return g_alias_walk.load(std::memory_order_relaxed) != 0; }
void count_down_walk() { g_down_walks.fetch_add(1, std::memory_order_relaxed); }
int64_t down_walks() { return g_down_walks.load(std::memory_order_relaxed); }

}  // namespace fastopt
