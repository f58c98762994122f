#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
