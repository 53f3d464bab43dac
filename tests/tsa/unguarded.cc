// Must NOT compile under clang -Wthread-safety -Werror for any CASE > 0:
// each case touches a member of the real SliceFs without the lock that
// docs/DESIGN.md ("Locks and atomics") says guards it. CASE 0 does the same
// with the locks held and must compile, so a failure of the other cases is
// the analysis's and not a typo's. tests/tsa/check.sh runs every case
// (scripts/dev.sh test, the clang -Wthread-safety stage).
#include "fs/slice_fs.h"

namespace pcimirror {

struct SliceFsTestPeer {
  static void touch(SliceFs& fs, SliceFs::Slice& s) {
#if CASE == 0
    {
      ReaderLock tree(fs.tree_mu_);
      (void)fs.names_.size();
    }
    {
      WriterLock meta(s.meta);
      s.entry.mode = 0600;
    }
    {
      MutexLock queue(fs.queue_mu_);
      fs.queue_.push_back(s.ino);
    }
    {
      WriterLock content(s.content);
      fs.settle_chunks(s);
    }
#elif CASE == 1  // tree_mu_ not held
    (void)fs.names_.size();
#elif CASE == 2  // meta held shared only: writing needs it exclusive
    ReaderLock meta(s.meta);
    s.entry.mode = 0600;
#elif CASE == 3  // queue_mu_ not held
    fs.queue_.push_back(s.ino);
#elif CASE == 4  // settle_chunks() REQUIRES(s.content) exclusive
    ReaderLock content(s.content);
    fs.settle_chunks(s);
#else
#error "CASE 0..4"
#endif
  }
};

}  // namespace pcimirror
