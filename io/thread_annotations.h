// Clang thread-safety annotations (-Wthread-safety; see
// https://clang.llvm.org/docs/ThreadSafetyAnalysis.html). They say which
// lock guards a member and which locks a function needs, takes or gives
// back; clang checks every function against them at compile time. Other
// compilers (g++) see nothing: each macro expands to nothing there.
//
// The locks they name are the annotated types of io/mutex.h (and
// fs/writer_priority_mutex.h): std::mutex carries no annotations in
// libstdc++, so clang cannot follow it. docs/DESIGN.md ("Locks and atomics")
// lists every lock and what it guards; scripts/dev.sh test builds with
// clang -Wthread-safety -Werror (cmake -DPCIMIRROR_THREAD_SAFETY=ON).
#pragma once

#if defined(__clang__)
#define PCIM_THREAD_ATTRIBUTE(x) __attribute__((x))
#else
#define PCIM_THREAD_ATTRIBUTE(x)
#endif

// On a class: its objects are locks ("capabilities") named `kind` in
// diagnostics.
#define CAPABILITY(kind) PCIM_THREAD_ATTRIBUTE(capability(kind))
// On a class: an RAII guard that holds the locks its constructor takes until
// its destructor.
#define SCOPED_CAPABILITY PCIM_THREAD_ATTRIBUTE(scoped_lockable)

// On a data member: reading needs `mu` held (shared or exclusive), writing
// needs it exclusive.
#define GUARDED_BY(mu) PCIM_THREAD_ATTRIBUTE(guarded_by(mu))
// On a pointer (or smart pointer) member: the same for what it points to.
#define PT_GUARDED_BY(mu) PCIM_THREAD_ATTRIBUTE(pt_guarded_by(mu))

// On a function: the caller holds the locks, exclusive / at least shared,
// and still holds them on return.
#define REQUIRES(...) PCIM_THREAD_ATTRIBUTE(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) \
  PCIM_THREAD_ATTRIBUTE(requires_shared_capability(__VA_ARGS__))

// On a function: it takes the locks (held on return) / gives them back
// (held on entry). Without arguments on a lock's own member function: the
// lock itself.
#define ACQUIRE(...) PCIM_THREAD_ATTRIBUTE(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) \
  PCIM_THREAD_ATTRIBUTE(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) PCIM_THREAD_ATTRIBUTE(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) \
  PCIM_THREAD_ATTRIBUTE(release_shared_capability(__VA_ARGS__))
// Takes the lock only when it returns the first argument (try_lock).
#define TRY_ACQUIRE(...) \
  PCIM_THREAD_ATTRIBUTE(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) \
  PCIM_THREAD_ATTRIBUTE(try_acquire_shared_capability(__VA_ARGS__))

// On a function: the caller must not hold the locks (it takes them itself).
#define EXCLUDES(...) PCIM_THREAD_ATTRIBUTE(locks_excluded(__VA_ARGS__))

// On a function: from its return on, the analysis takes the lock as held
// (for code that knows a lock is held where clang cannot see it).
#define ASSERT_CAPABILITY(x) PCIM_THREAD_ATTRIBUTE(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) \
  PCIM_THREAD_ATTRIBUTE(assert_shared_capability(x))

// On a function: its body is not checked. Each use says why in a comment.
#define NO_THREAD_SAFETY_ANALYSIS \
  PCIM_THREAD_ATTRIBUTE(no_thread_safety_analysis)
