#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/xattr.h>
#endif
#include "CHaulSystem.h"

int chaul_fallocate(int fd, off_t offset, off_t length) {
#ifdef __linux__
    return fallocate(fd, 0, offset, length);
#else
    (void)fd; (void)offset; (void)length;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int chaul_renameat_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, 1 /* RENAME_NOREPLACE */);
#else
    (void)olddirfd; (void)oldpath; (void)newdirfd; (void)newpath;
    errno = ENOSYS;
    return -1;
#endif
}

int chaul_start_writeback(int fd, off_t offset, off_t length) {
#ifdef __linux__
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

#ifdef __GLIBC__
#include <malloc.h>
#endif

void chaul_limit_malloc_arenas(int count) {
#ifdef __GLIBC__
    mallopt(M_ARENA_MAX, count);
#else
    (void)count;
#endif
}

#ifdef __linux__
#include <sys/epoll.h>
#endif

int chaul_epoll_create(void) {
#ifdef __linux__
    return epoll_create1(EPOLL_CLOEXEC);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int chaul_epoll_watch(int epfd, int fd, int read, int write) {
#ifdef __linux__
    struct epoll_event event = {0};
    event.events = (read ? EPOLLIN : 0) | (write ? EPOLLOUT : 0);
    event.data.fd = fd;
    if (!read && !write) {
        int result = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
        // Not watched is no error, and neither is a descriptor already closed: closing takes it
        // out of the set (curl reports some sockets removed only after it closed them).
        return (result != 0 && (errno == ENOENT || errno == EBADF)) ? 0 : result;
    }
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) == 0) return 0;
    if (errno != ENOENT) return -1;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
#else
    (void)epfd; (void)fd; (void)read; (void)write;
    errno = ENOSYS;
    return -1;
#endif
}

int chaul_epoll_ready(int epfd, int *fds, int *flags, int capacity) {
#ifdef __linux__
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count;
    do { count = epoll_wait(epfd, events, capacity, 0); } while (count < 0 && errno == EINTR);
    for (int i = 0; i < count; i++) {
        fds[i] = events[i].data.fd;
        int bits = 0;
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) bits |= 1;
        if (events[i].events & EPOLLOUT) bits |= 2;
        if (events[i].events & EPOLLERR) bits |= 4;
        flags[i] = bits;
    }
    return count;
#else
    (void)epfd; (void)fds; (void)flags; (void)capacity;
    errno = ENOSYS;
    return -1;
#endif
}

int chaul_set_attribute(int fd, const char *name, const void *value, size_t size) {
#ifdef __linux__
    return fsetxattr(fd, name, value, size, 0);
#else
    (void)fd; (void)name; (void)value; (void)size;
    errno = ENOTSUP;
    return -1;
#endif
}

ssize_t chaul_get_attribute(int fd, const char *name, void *value, size_t size) {
#ifdef __linux__
    return fgetxattr(fd, name, value, size);
#else
    (void)fd; (void)name; (void)value; (void)size;
    errno = ENOTSUP;
    return -1;
#endif
}

int chaul_remove_attribute(int fd, const char *name) {
#ifdef __linux__
    return fremovexattr(fd, name);
#else
    (void)fd; (void)name;
    errno = ENOTSUP;
    return -1;
#endif
}
