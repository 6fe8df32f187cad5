// The thread team behind parallel_run (see pool.hpp for why fastopt keeps its own).
//
// One call at a time holds the team.  The caller publishes a job in one atomic word (a
// generation, a cap on helpers, a count of helpers that entered, a closed bit); a worker enters
// by raising the count while the job is open and under its cap, then pulls work from the job
// until none is left.  The caller does the same and, when it runs out of work, closes the job
// and waits only for the helpers that entered: a worker the OS has not scheduled yet (a busy
// machine) is not waited for, it finds the job closed when it wakes.  Workers spin a short
// while after a job, then sleep on a condition variable.
#include "pool.hpp"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>

#include <cstring>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <system_error>
#include <thread>

namespace fastopt {
namespace {

// Spin after a job before sleeping, in microseconds: long enough to catch the next call of the
// same step (a norm pass, then the update), short enough that BLAS gets the cores back at once.
constexpr int kDefaultSpinUs = 20;

// The job word: generation (bits 32..63), closed (bit 31), helper cap (bits 16..27),
// helpers entered (bits 0..11).
constexpr uint64_t kClosed = uint64_t(1) << 31;
inline uint64_t gen_of(uint64_t w) { return w >> 32; }
inline int cap_of(uint64_t w) { return int((w >> 16) & 0xfff); }
inline int entered_of(uint64_t w) { return int(w & 0xfff); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until ready() or `us` microseconds have passed; returns ready().
template <class F>
bool spin_until(F ready, int us) {
  if (ready()) return true;
  if (us <= 0) return false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int k = 0; k < 64; ++k) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= end) return ready();
  }
}

int read_spin_us() {
  const char* s = std::getenv("FASTOPT_SPIN_US");
  if (s && *s) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && v >= 0 && v <= 100000) return int(v);
  }
  return kDefaultSpinUs;
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? int(h) : 1;
}

class Pool {
 public:
  Pool() : spin_us_(read_spin_us()) {}
  // Never destroyed: workers may still be spinning on it while the process exits, and in a
  // forked child its threads do not exist (the child builds a new Pool and leaks this one).
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  void run(int want, TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> hold(run_mu_, std::try_to_lock);
    if (!hold.owns_lock()) return fn(ctx);  // another call has the team: work alone
    const int helpers = grow(want - 1);
    if (helpers < 1) return fn(ctx);
    fn_ = fn;
    ctx_ = ctx;
    left_.store(0, std::memory_order_relaxed);
    const uint64_t next = ((gen_of(job_.load(std::memory_order_relaxed)) + 1) << 32) | (uint64_t(helpers) << 16);
    job_.store(next, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      wake_.notify_all();
    }
    fn(ctx);
    // Close the job; only the helpers that entered before this can still be running.
    uint64_t w = job_.load(std::memory_order_acquire);
    while (!job_.compare_exchange_weak(w, w | kClosed, std::memory_order_acq_rel)) {
    }
    const int entered = entered_of(w);
    auto all_left = [&] { return left_.load(std::memory_order_acquire) == entered; };
    if (!spin_until(all_left, 100)) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true, std::memory_order_seq_cst);
      done_.wait(lk, all_left);
      caller_waiting_.store(false, std::memory_order_relaxed);
    }
  }

  int workers() const { return n_workers_.load(std::memory_order_relaxed); }
  int spin_us() const { return spin_us_; }
  std::mutex& run_mutex() { return run_mu_; }

 private:
  // Makes sure `want` workers exist; returns how many do (the OS may refuse threads).
  int grow(int want) {
    if (want > kMaxThreads - 1) want = kMaxThreads - 1;
    int have = n_workers_.load(std::memory_order_relaxed);
    while (have < want && !refused_) {
      try {
        const uint64_t seen = gen_of(job_.load(std::memory_order_relaxed));
        std::thread([this, seen] { work(seen); }).detach();
        n_workers_.store(++have, std::memory_order_relaxed);
      } catch (const std::system_error&) {
        refused_ = true;  // stay with the threads there are
      }
    }
    return want < have ? want : have;
  }

  void work(uint64_t seen) {
    for (;;) {
      auto fresh = [&] { return gen_of(job_.load(std::memory_order_acquire)) != seen; };
      if (!spin_until(fresh, spin_us_)) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lk, fresh);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      uint64_t w = job_.load(std::memory_order_acquire);
      seen = gen_of(w);
      while (!(w & kClosed) && entered_of(w) < cap_of(w)) {
        if (job_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) {
          fn_(ctx_);
          left_.fetch_add(1, std::memory_order_seq_cst);
          if (caller_waiting_.load(std::memory_order_seq_cst)) {
            std::lock_guard<std::mutex> lk(mu_);
            done_.notify_one();
          }
          break;
        }
        seen = gen_of(w);
      }
    }
  }

  std::mutex run_mu_;  // one call holds the team
  std::mutex mu_;      // guards sleeping and waking
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> job_{0};
  std::atomic<int> left_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<int> n_workers_{0};  // detached workers started (written under run_mu_)
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  bool refused_ = false;
  const int spin_us_;
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int> g_threads{0};  // 0: the default
std::atomic<int> g_cpus{0};
std::once_flag g_once;

void before_fork() { g_pool.load()->run_mutex().lock(); }
void after_fork_parent() { g_pool.load()->run_mutex().unlock(); }
void after_fork_child() {
  // The parent's workers do not exist here; their pool (with its held mutex) is left behind.
  g_pool.store(new Pool());
  g_cpus.store(affinity_cpus());
}

Pool& pool() {
  std::call_once(g_once, [] {
    g_pool.store(new Pool());
    g_cpus.store(affinity_cpus());
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
  });
  return *g_pool.load(std::memory_order_acquire);
}

}  // namespace

namespace {
thread_local bool t_omp_team = false;
std::atomic<bool> g_forked{false};  // in a forked child the parent's OpenMP team is not used

// libgomp's entry for `#pragma omp parallel`: fn(data) on num_threads threads, the caller among
// them, returning when all have.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

struct OmpRuntime {
  GompParallel parallel = nullptr;
  int (*max_threads)() = nullptr;  // omp_get_max_threads: the team size torch.set_num_threads set
};

// A loaded library whose name holds one of `names`, and the runtime's entries as that library
// resolves them: its own, or those of the first of its dependencies that has them.
struct OmpSearch {
  const char* names[2];
  OmpRuntime rt;
};

int find_omp(struct dl_phdr_info* info, size_t, void* out) {
  auto* s = static_cast<OmpSearch*>(out);
  const char* name = info->dlpi_name;
  if (!name || !*name) return 0;
  bool match = false;
  for (const char* n : s->names) match = match || (n && std::strstr(name, n));
  if (!match) return 0;
  void* h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);  // already loaded: only a handle to it
  if (!h) return 0;
  s->rt.parallel = reinterpret_cast<GompParallel>(dlsym(h, "GOMP_parallel"));
  s->rt.max_threads = reinterpret_cast<int (*)()>(dlsym(h, "omp_get_max_threads"));
  dlclose(h);  // the library stays: the process still holds it
  if (s->rt.parallel && s->rt.max_threads) return 1;
  s->rt = OmpRuntime{};
  return 0;
}

// torch's team: the runtime libtorch_cpu itself calls.  A process can hold several (scikit-learn's
// wheels bring their own libgomp, and one imported first comes first in the list), and another's
// team would be a second, cold set of threads beside torch's spinning ones.  Without torch, the
// first OpenMP runtime loaded.
const OmpRuntime& omp_runtime() {
  static const OmpRuntime rt = [] {
    OmpSearch torch_lib{{"libtorch_cpu", nullptr}, {}};
    OmpSearch any{{"libgomp", "libiomp"}, {}};
    OmpSearch* found = dl_iterate_phdr(find_omp, &torch_lib) ? &torch_lib : dl_iterate_phdr(find_omp, &any) ? &any : nullptr;
    if (!found) return OmpRuntime{};
    pthread_atfork(nullptr, nullptr, [] { g_forked.store(true); });
    return found->rt;
  }();
  return rt;
}
}  // namespace

bool omp_team_available() { return omp_runtime().parallel && !g_forked.load(std::memory_order_relaxed); }

bool set_thread_omp_team(bool on) {
  const bool prev = t_omp_team;
  t_omp_team = on && omp_team_available();
  return prev;
}

void parallel_run(int nthreads, TaskFn fn, void* ctx) {
  if (nthreads <= 1) return fn(ctx);
  if (t_omp_team && !g_forked.load(std::memory_order_relaxed)) {
    // No more threads than the team has (torch.set_num_threads), so none is started for the call.
    const OmpRuntime& rt = omp_runtime();
    const int team = rt.max_threads();
    if (team < nthreads) nthreads = team;
    if (nthreads <= 1) return fn(ctx);
    return rt.parallel(fn, ctx, unsigned(nthreads), 0);
  }
  pool().run(nthreads, fn, ctx);
}

int num_threads() {
  const int set = g_threads.load(std::memory_order_relaxed);
  if (set > 0) return set;
  const char* s = std::getenv("OMP_NUM_THREADS");  // "4" or "4,2": the first level
  if (s && *s) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && v >= 1) return v < kMaxThreads ? int(v) : kMaxThreads;
  }
  pool();
  return g_cpus.load(std::memory_order_relaxed);
}

void set_num_threads(int n) { g_threads.store(n > 0 ? (n < kMaxThreads ? n : kMaxThreads) : 0); }

int thread_setting() { return g_threads.load(std::memory_order_relaxed); }

namespace {
thread_local int64_t t_parallel_min = 0;
}
int64_t parallel_min(int64_t fallback) { return t_parallel_min > 0 ? t_parallel_min : fallback; }
int64_t set_thread_parallel_min(int64_t n) {
  const int64_t prev = t_parallel_min;
  t_parallel_min = n > 0 ? n : 0;
  return prev;
}

int pool_workers() { return pool().workers(); }
int pool_spin_us() { return pool().spin_us(); }

}  // namespace fastopt

// threadpoolctl finds fastopt's team through these (fastopt registers a controller for them).
extern "C" {
__attribute__((visibility("default"))) int fastopt_get_num_threads() { return fastopt::num_threads(); }
__attribute__((visibility("default"))) void fastopt_set_num_threads(int n) { fastopt::set_num_threads(n); }
}
