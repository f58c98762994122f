#ifndef HAUL_CHAULSYSTEM_H
#define HAUL_CHAULSYSTEM_H

#include <sys/types.h>

/// `fallocate(fd, 0, offset, length)` on Linux (a GNU extension Swift's Glibc module hides);
/// returns -1 with errno EOPNOTSUPP elsewhere.
int chaul_fallocate(int fd, off_t offset, off_t length);

#endif
