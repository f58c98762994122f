#ifndef HAUL_CHAULSYSTEM_H
#define HAUL_CHAULSYSTEM_H

#include <sys/types.h>

/// `fallocate(fd, 0, offset, length)` on Linux (a GNU extension Swift's Glibc module hides);
/// returns -1 with errno EOPNOTSUPP elsewhere.
int chaul_fallocate(int fd, off_t offset, off_t length);

/// `renameat2(olddirfd, old, newdirfd, new, RENAME_NOREPLACE)` on Linux: fails with EEXIST
/// instead of replacing. Returns -1 with errno ENOSYS where the call does not exist.
int chaul_renameat_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/// `sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)` on Linux: starts writeback of
/// the range's dirty pages without waiting for it. Returns 0 (doing nothing) elsewhere.
int chaul_start_writeback(int fd, off_t offset, off_t length);

/// At most `count` malloc arenas (glibc's `M_ARENA_MAX`; nothing elsewhere). Dispatch runs a
/// queue on whichever worker thread is free, and glibc gives each thread an arena of its own, so
/// a long download's buffers end up spread over several arenas that each keep their high-water
/// mark resident.
void chaul_limit_malloc_arenas(int count);

#endif
