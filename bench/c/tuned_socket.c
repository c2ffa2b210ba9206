/*
 * The "tuned" libutp of the benchmarks: upstream ucat.c, unmodified, compiled
 * with -Dsocket=bench_tuned_socket and linked with this file, so that its UDP
 * socket gets 4 MiB kernel buffers instead of the system default (about
 * 208 KiB, which overflows at loopback speeds and costs a 1 s timeout per
 * loss). As root the sizes are forced past net.core.{r,w}mem_max.
 */
#include <sys/socket.h>

/* The same compiler command builds ucat.c: the real socket() is wanted here. */
#undef socket

int bench_tuned_socket(int domain, int type, int protocol)
{
	int fd = socket(domain, type, protocol);
	if (fd >= 0) {
		int size = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
	}
	return fd;
}
