/* LD_PRELOAD shim: counts the datagrams an unmodified program sends with
 * sendto() and receives with recvfrom(), for the receiver-drop measurement
 * (bench/harness.py, section 6). The counts live in the file named by
 * BENCH_COUNT_FILE (two little-endian u64: received, sent), mapped shared, so
 * they can be read while the program runs and survive a SIGKILL. Without
 * BENCH_COUNT_FILE the shim only forwards. One relaxed atomic add per call.
 *
 * gcc -O2 -shared -fPIC -o count_dgrams.so count_dgrams.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t *counts; /* [0] datagrams received, [1] datagrams sent */
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);

__attribute__((constructor)) static void count_init(void)
{
    real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
    real_sendto = dlsym(RTLD_NEXT, "sendto");
    const char *path = getenv("BENCH_COUNT_FILE");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 2 * sizeof(uint64_t)) != 0)
        return;
    void *m = mmap(NULL, 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED)
        counts = m;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *alen)
{
    ssize_t r = real_recvfrom(fd, buf, len, flags, addr, alen);
    if (r >= 0 && counts)
        __atomic_fetch_add(&counts[0], 1, __ATOMIC_RELAXED);
    return r;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
               socklen_t alen)
{
    ssize_t r = real_sendto(fd, buf, len, flags, addr, alen);
    if (r >= 0 && counts)
        __atomic_fetch_add(&counts[1], 1, __ATOMIC_RELAXED);
    return r;
}
