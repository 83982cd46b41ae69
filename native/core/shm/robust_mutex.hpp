// A process-shared, robust pthread mutex living in the segment. Boost's own mutexes
// cannot be made consistent after an owner dies; this one can.
#pragma once

#include <pthread.h>

#include <cstdint>

namespace nativecache::shm {

enum class LockResult { kAcquired, kOwnerDied, kUnrecoverable, kTimedOut };

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
// with the lock held, before the lock is made consistent (without the interpreter when
// it comes at the end of a wait).
struct Repair {
  void (*fn)(void* ctx) noexcept = nullptr;
  void* ctx = nullptr;
};

// What a wait leaves to do. lock() releases the interpreter before it waits (the hooks'
// begin); the caller takes it back with resume() only once it has let the lock go, so
// the critical section after a wait runs without the interpreter (it never needs it),
// and taking the interpreter back, which may wait for another thread, never keeps
// other processes waiting for the lock.
class Waited {
 public:
  Waited() = default;
  Waited(const Waited&) = delete;
  Waited& operator=(const Waited&) = delete;
  ~Waited() { resume(); }
  void resume() noexcept;  // the hooks' end, once, if a wait began

 private:
  friend LockResult lock(pthread_mutex_t* m, Waited& waited, Repair repair,
                         std::int64_t timeout_ms) noexcept;
  void* token_ = nullptr;
  bool pending_ = false;
};

// Gives up the interpreter for a scope that may block on something other than a shard
// lock (the hooks' begin, then their end when the scope ends). Only for a caller that holds
// it, as every shared-memory operation does when it begins.
class InterpreterReleased {
 public:
  InterpreterReleased() noexcept;
  ~InterpreterReleased();
  InterpreterReleased(const InterpreterReleased&) = delete;
  InterpreterReleased& operator=(const InterpreterReleased&) = delete;

 private:
  void* token_ = nullptr;
  bool released_ = false;
};

// Spins briefly, then waits, with the hooks' begin before the wait. Returns holding the
// lock: kAcquired, or kOwnerDied when its last owner had died (repair ran, the lock is
// consistent again); kUnrecoverable holding nothing; kTimedOut, holding nothing, once
// timeout_ms passed in the wait (0: no limit). A critical section lasts microseconds, so
// a lock held for seconds has a holder that is stopped, or a lock word that is garbage
// (the owner it names never existed, so no death ever frees it).
LockResult lock(pthread_mutex_t* m, Waited& waited, Repair repair = {},
                std::int64_t timeout_ms = 0) noexcept;
void unlock(pthread_mutex_t* m) noexcept;

}  // namespace nativecache::shm
