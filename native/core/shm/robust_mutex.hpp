// A process-shared, robust pthread mutex living in the segment. Boost's own mutexes
// cannot be made consistent after an owner dies; this one can.
#pragma once

#include <pthread.h>

namespace nativecache::shm {

enum class LockResult { kAcquired, kOwnerDied, kUnrecoverable };

// Hooks run around a blocking wait, so the binding can release the GIL while another
// process holds the lock. Set once by the binding; core code never names Python.
struct WaitHooks {
  void* (*begin)() = nullptr;
  void (*end)(void*) = nullptr;
};
void set_wait_hooks(WaitHooks hooks) noexcept;

// Initialises *m in place (PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST).
bool init_robust_mutex(pthread_mutex_t* m) noexcept;

// Repairs what a lock guards when its last owner died inside a critical section. Runs
// with the lock held, before the lock is made consistent, and without the interpreter
// when it comes at the end of a wait.
struct Repair {
  void (*fn)(void* ctx) noexcept = nullptr;
  void* ctx = nullptr;
};

// Spins briefly, then waits with the hooks around the wait. Returns holding the lock:
// kAcquired, or kOwnerDied when its last owner had died (repair ran, the lock is
// consistent again); kUnrecoverable holding nothing. The hooks' end never runs while
// this thread holds the lock (taking the interpreter back may wait for another thread,
// and other processes would wait with it): a wait that ends holding the lock lets it
// go, runs the end hook, and starts over.
LockResult lock(pthread_mutex_t* m, Repair repair = {}) noexcept;
void unlock(pthread_mutex_t* m) noexcept;

}  // namespace nativecache::shm
