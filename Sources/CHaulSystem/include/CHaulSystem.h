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

/// A new epoll descriptor (close-on-exec), or -1 with errno (ENOSYS off Linux).
int chaul_epoll_create(void);

/// Sets what `epfd` watches `fd` for (level-triggered): reading, writing, both, or, with
/// neither, nothing (the descriptor is removed; not being watched, or being closed already, is
/// no error).
int chaul_epoll_watch(int epfd, int fd, int read, int write);

/// Up to `capacity` (at most 64) descriptors of `epfd` that are ready now, without waiting:
/// their numbers in `fds` and in `flags` 1 readable (or hung up), 2 writable, 4 in error, as
/// curl's `CURL_CSELECT_IN`, `_OUT` and `_ERR`. Returns the count, or -1 with errno.
int chaul_epoll_ready(int epfd, int *fds, int *flags, int capacity);

/// `fsetxattr(fd, name, value, size, 0)` on Linux; -1 with errno ENOTSUP elsewhere.
int chaul_set_attribute(int fd, const char *name, const void *value, size_t size);

/// `fgetxattr(fd, name, value, size)` on Linux: the value's size, or -1 with errno (ENODATA:
/// no such attribute; ERANGE: larger than `size`); -1 with errno ENOTSUP elsewhere.
ssize_t chaul_get_attribute(int fd, const char *name, void *value, size_t size);

/// `fremovexattr(fd, name)` on Linux; -1 with errno ENOTSUP elsewhere.
int chaul_remove_attribute(int fd, const char *name);

#endif
