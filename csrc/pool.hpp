// fastopt's own thread team: the kernels' only source of threads.
//
// Why not an OpenMP runtime: the kernels share the cores with NumPy's BLAS and torch's pool.
// A team that spins after each step takes the cores the next matmul needs, a child process
// after fork() waits forever on a team that died with the parent, and the thread count has to
// follow fastopt.set_num_threads, OMP_NUM_THREADS and threadpoolctl at every call.  This team
// waits passively after a short, measured spin, is rebuilt in a forked child, runs a call on
// the calling thread alone when another call holds the team, and never takes the process down
// when the OS refuses a thread (the call runs on the threads that exist).  The one exception is
// opt-in and per thread: fastopt.torch's step runs on torch's OpenMP team (set_thread_omp_team).
#pragma once
#include <cstdint>

namespace fastopt {

// fn(ctx) on up to nthreads threads at once, the caller among them; returns when every one has
// returned.  Each call of fn takes work from ctx until none is left (an atomic counter), so
// fewer threads than asked (threads the OS refused, the team busy with another call, a helper
// not yet scheduled) only make it slower.
using TaskFn = void (*)(void* ctx);
void parallel_run(int nthreads, TaskFn fn, void* ctx);

// Threads a call uses: set_num_threads' value, else OMP_NUM_THREADS, else the CPUs this
// process may run on.  Read at every call.
int num_threads();
// n >= 1 (at most kMaxThreads); 0 goes back to the default.
void set_num_threads(int n);
int thread_setting();  // set_num_threads' value, 0 when unset
constexpr int kMaxThreads = 1024;

// The fewest elements a call must have in all before helpers join it: `fallback` (the kernels'
// default), unless the calling thread set its own (fastopt.torch does: torch's OpenMP workers
// spin for milliseconds after each parallel op and hold the cores a helper would need).
int64_t parallel_min(int64_t fallback);
// This thread's minimum (0: the default again); returns the previous one.
int64_t set_thread_parallel_min(int64_t n);

// The calling thread's calls on the process's OpenMP team instead of fastopt's own (fastopt.torch
// does this while torch runs more than one thread: right after a parallel torch op that team's
// workers are spinning on the cores, and they take the step's items at once, where fastopt's
// helpers would wait for the cores).  The runtime libtorch_cpu calls, else the first loaded
// (libgomp, or one that provides its GOMP_parallel entry); false where there is none.  A call then uses
// at most the team's size (omp_get_max_threads: torch.set_num_threads), so it starts no thread.
// Returns the previous setting.
bool set_thread_omp_team(bool on);
bool omp_team_available();

// Workers started so far (the team grows on demand), and microseconds a worker spins after a
// call before it sleeps.
int pool_workers();
int pool_spin_us();

}  // namespace fastopt
