/*
 * utpt_cat: copy a stream over uTP with the threaded C API (utp_threaded.h),
 * like utpcat: one side listens and writes what it receives to stdout, the
 * other sends its stdin.
 *
 *   utpt_cat -l PORT > FILE      accept one connection on 0.0.0.0:PORT,
 *                                write everything to stdout, exit 0 at the
 *                                sender's end of stream
 *   utpt_cat HOST PORT < FILE    send stdin; exit 0 once the listener has
 *                                read it all (its end of stream follows ours)
 *
 * Errors go to stderr with exit status 1.
 * Build: make -C examples/c (needs cargo build --release -p utp-ffi first).
 */
#include "utp_threaded.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536

static int fail(const char *what)
{
    fprintf(stderr, "utpt_cat: %s: %s\n", what, strerror(errno));
    return 1;
}

/* Write all of buf to the file descriptor fd. */
static int write_fd(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int listen_once(const char *port)
{
    static unsigned char buf[CHUNK];
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(NULL, port, &hints, &ai) != 0) {
        fprintf(stderr, "utpt_cat: bad port %s\n", port);
        return 1;
    }
    utpt_context *ctx = utpt_bind(ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (ctx == NULL) return fail("utpt_bind");
    utpt_socket *s = utpt_accept(ctx, -1, NULL, NULL);
    if (s == NULL) return fail("utpt_accept");
    for (;;) {
        ssize_t n = utpt_read(s, buf, sizeof buf, -1);
        if (n < 0) return fail("utpt_read");
        if (n == 0) break;
        if (write_fd(STDOUT_FILENO, buf, (size_t)n) != 0) return fail("stdout");
    }
    /* Our end of stream tells the sender that everything arrived. */
    utpt_close(s);
    utpt_context_close(ctx, -1);
    return 0;
}

static int send_stdin(const char *host, const char *port)
{
    static unsigned char buf[CHUNK];
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "utpt_cat: cannot resolve %s:%s\n", host, port);
        return 1;
    }
    utpt_context *ctx = utpt_bind(NULL, 0);
    if (ctx == NULL) return fail("utpt_bind");
    utpt_socket *s = utpt_connect(ctx, ai->ai_addr, ai->ai_addrlen, 10000);
    freeaddrinfo(ai);
    if (s == NULL) return fail("utpt_connect");
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail("stdin");
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = utpt_write(s, buf + off, (size_t)(n - off), -1);
            if (w < 0) return fail("utpt_write");
            off += w;
        }
    }
    if (utpt_shutdown(s, SHUT_WR) != 0) return fail("utpt_shutdown");
    /* The listener ends its side once it has read everything we sent. */
    for (;;) {
        ssize_t n = utpt_read(s, buf, sizeof buf, -1);
        if (n < 0) return fail("waiting for the listener");
        if (n == 0) break;
    }
    utpt_close(s);
    utpt_context_close(ctx, -1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "-l") == 0) return listen_once(argv[2]);
    if (argc == 3) return send_stdin(argv[1], argv[2]);
    fprintf(stderr, "usage: utpt_cat -l PORT > FILE\n       utpt_cat HOST PORT < FILE\n");
    return 2;
}
