/*
 * Tests of the threaded C API (utp_threaded.h, utpt_*), loopback only.
 * Run by scripts/test-ffi.sh natively (5 MB) and under Valgrind (smaller).
 *
 * 1. NULL and garbage arguments: -1 / NULL with errno set, nothing crashes.
 * 2. A server (this thread) and a client thread in one program move
 *    THREADED_BYTES (argv[1], default 5000000) byte-exact; the server waits
 *    with poll() on utpt_context_fd and utpt_fd and reads with timeout 0.
 *    The client half-closes, the server answers with a checksum, both close.
 * 3. Timeouts and errno: EAGAIN, ETIMEDOUT, EPIPE after SHUT_WR.
 * 4. Connecting to a closed port fails with ECONNREFUSED quickly.
 * 5. Closed handles give EBADF; closing a context wakes a blocked accept.
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "utp_threaded.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, \
                    errno, strerror(errno));                                          \
        }                                                                             \
    } while (0)

static size_t total_bytes = 5000000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char pattern(size_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

static struct sockaddr_in loopback(unsigned short port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

/* poll one descriptor for POLLIN; 1 readable, 0 timeout */
static int wait_fd(int fd, int timeout_ms)
{
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* A context passed where a socket is expected, and the other way round:
 * each handle type has its own tag, so every call refuses it with EBADF and
 * leaves both handles working. */
static void cross_type_misuse(utpt_context *ctx, utpt_socket *s)
{
    utpt_socket *ctx_as_sock = (utpt_socket *)ctx;
    utpt_context *sock_as_ctx = (utpt_context *)s;
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    char b[16];

    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(9);
    errno = 0;
    CHECK(utpt_readiness(ctx_as_sock) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_read(ctx_as_sock, b, sizeof b, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_write(ctx_as_sock, b, sizeof b, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_shutdown(ctx_as_sock, SHUT_WR) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_getpeername(ctx_as_sock, (struct sockaddr *)&sin, &sl) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_fd(ctx_as_sock) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_set_fd_events(ctx_as_sock, UTPT_READABLE) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_close(ctx_as_sock) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_local_addr(sock_as_ctx, (struct sockaddr *)&sin, &sl) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_connect(sock_as_ctx, (struct sockaddr *)&sin, sizeof sin, 100) == NULL &&
          errno == EBADF);
    errno = 0;
    CHECK(utpt_accept(sock_as_ctx, 0, NULL, NULL) == NULL && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_fd(sock_as_ctx) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_close(sock_as_ctx, 0) == -1 && errno == EBADF);
    /* both still work */
    CHECK(utpt_readiness(s) >= 0);
    sl = sizeof sin;
    CHECK(utpt_context_local_addr(ctx, (struct sockaddr *)&sin, &sl) == 0);
}

/* ------------------------------------------------------------------ 1. misuse */

static void test_null_everywhere(void)
{
    char buf[16];
    struct sockaddr_in sin = loopback(9);
    socklen_t sl = sizeof sin;
    struct sockaddr un;

    errno = 0;
    CHECK(utpt_context_local_addr(NULL, (struct sockaddr *)&sin, &sl) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_connect(NULL, (struct sockaddr *)&sin, sizeof sin, 100) == NULL && errno == EBADF);
    errno = 0;
    CHECK(utpt_accept(NULL, 0, NULL, NULL) == NULL && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_fd(NULL) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_close(NULL, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_read(NULL, buf, sizeof buf, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_write(NULL, buf, sizeof buf, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_shutdown(NULL, SHUT_WR) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_close(NULL) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_getpeername(NULL, (struct sockaddr *)&sin, &sl) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_readiness(NULL) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_fd(NULL) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_set_fd_events(NULL, UTPT_READABLE) == -1 && errno == EBADF);
    /* misaligned garbage pointers are refused too */
    errno = 0;
    CHECK(utpt_read((utpt_socket *)(buf + 1), buf, 1, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_fd((utpt_context *)(buf + 1)) == -1 && errno == EBADF);

    /* bad addresses */
    memset(&un, 0, sizeof un);
    un.sa_family = AF_UNIX;
    errno = 0;
    CHECK(utpt_bind(&un, sizeof un) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(utpt_bind((struct sockaddr *)&sin, 3) == NULL && errno == EINVAL);
}

/* ------------------------------------------------------------------ 2. transfer */

struct client_args {
    struct sockaddr_in server;
    int ok;
    uint32_t reply;
    double connect_s;
};

static void *client_main(void *p)
{
    struct client_args *ca = p;
    utpt_context *c = utpt_bind(NULL, 0);
    utpt_socket *s;
    unsigned char chunk[16384];
    size_t off = 0;
    double t0 = now_s();
    ssize_t n;
    size_t got = 0;

    ca->ok = 0;
    if (c == NULL) return NULL;
    s = utpt_connect(c, (struct sockaddr *)&ca->server, sizeof ca->server, 5000);
    ca->connect_s = now_s() - t0;
    if (s == NULL) {
        fprintf(stderr, "client: connect: %s\n", strerror(errno));
        utpt_context_close(c, 0);
        return NULL;
    }
    while (off < total_bytes) {
        size_t want = total_bytes - off < sizeof chunk ? total_bytes - off : sizeof chunk;
        size_t i;
        for (i = 0; i < want; i++) chunk[i] = pattern(off + i);
        /* partial writes: write the rest of the chunk */
        i = 0;
        while (i < want) {
            n = utpt_write(s, chunk + i, want - i, 20000);
            if (n <= 0) {
                fprintf(stderr, "client: write: %s\n", strerror(errno));
                goto out;
            }
            i += (size_t)n;
        }
        off += want;
    }
    if (utpt_shutdown(s, SHUT_WR) != 0) goto out;
    errno = 0;
    if (utpt_write(s, "x", 1, 0) != -1 || errno != EPIPE) {
        fprintf(stderr, "client: write after SHUT_WR did not fail with EPIPE\n");
        goto out;
    }
    /* the server's reply: a 4-byte checksum, then end of stream */
    while ((n = utpt_read(s, (unsigned char *)&ca->reply + got, sizeof ca->reply - got, 20000)) > 0)
        got += (size_t)n;
    ca->ok = (n == 0 && got == sizeof ca->reply);
    if (!ca->ok) fprintf(stderr, "client: reply: n=%zd got=%zu %s\n", n, got, strerror(errno));
out:
    utpt_close(s);
    /* waits until the connection is finished (data delivered, FINs exchanged) */
    if (utpt_context_close(c, 30000) != 0) {
        fprintf(stderr, "client: context close: %s\n", strerror(errno));
        ca->ok = 0;
    }
    return NULL;
}

static void test_transfer(void)
{
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    utpt_context *srv;
    utpt_socket *s;
    struct client_args ca;
    pthread_t th;
    unsigned char *buf = malloc(65536);
    size_t got = 0, bad = 0;
    uint32_t sum = 0, reply;
    int cfd, fd, spurious = 0, rounds = 0, m;
    double t0 = now_s(), secs;
    struct sockaddr_in any = loopback(0);

    srv = utpt_bind((struct sockaddr *)&any, sizeof any);
    CHECK(srv != NULL);
    if (srv == NULL) return;
    CHECK(utpt_context_local_addr(srv, (struct sockaddr *)&local, &len) == 0);
    CHECK(len == sizeof local && local.sin_family == AF_INET && local.sin_port != 0);
    cfd = utpt_context_fd(srv);
    CHECK(cfd >= 0);
    CHECK(utpt_context_fd(srv) == cfd); /* one descriptor per handle */
    CHECK(!wait_fd(cfd, 0));            /* nothing pending yet */
    errno = 0;
    CHECK(utpt_accept(srv, 0, NULL, NULL) == NULL && errno == EAGAIN);
    errno = 0;
    CHECK(utpt_accept(srv, 30, NULL, NULL) == NULL && errno == ETIMEDOUT);

    memset(&ca, 0, sizeof ca);
    ca.server = local;
    CHECK(pthread_create(&th, NULL, client_main, &ca) == 0);

    CHECK(wait_fd(cfd, 10000)); /* the incoming connection */
    s = utpt_accept(srv, 0, (struct sockaddr *)&peer, &plen);
    CHECK(s != NULL);
    if (s == NULL) {
        pthread_join(th, NULL);
        utpt_context_close(srv, 0);
        free(buf);
        return;
    }
    CHECK(plen == sizeof peer && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(!wait_fd(cfd, 0)); /* level-triggered: cleared once accepted */
    plen = sizeof peer;
    CHECK(utpt_getpeername(s, (struct sockaddr *)&peer, &plen) == 0 && plen == sizeof peer);
    m = utpt_readiness(s);
    CHECK(m >= 0 && (m & UTPT_WRITABLE) && !(m & UTPT_ERROR));
    CHECK(utpt_set_fd_events(s, 0) == -1 && errno == EINVAL);
    CHECK(utpt_set_fd_events(s, 64) == -1 && errno == EINVAL);
    CHECK(utpt_set_fd_events(s, UTPT_READABLE) == 0);
    fd = utpt_fd(s);
    CHECK(fd >= 0 && fd != cfd);

    for (;;) {
        ssize_t n;
        if (!wait_fd(fd, 20000)) {
            CHECK(!"poll on utpt_fd timed out");
            break;
        }
        rounds++;
        n = utpt_read(s, buf, 65536, 0);
        if (n < 0) {
            if (errno == EAGAIN) { spurious++; continue; }
            CHECK(!"utpt_read failed");
            break;
        }
        if (n == 0) break; /* end of stream */
        {
            ssize_t i;
            for (i = 0; i < n; i++) {
                if (buf[i] != pattern(got + (size_t)i)) bad++;
                sum = sum * 31 + buf[i];
            }
        }
        got += (size_t)n;
    }
    secs = now_s() - t0;
    CHECK(got == total_bytes);
    CHECK(bad == 0);
    CHECK(spurious <= 2); /* poll said readable: a read has something */
    m = utpt_readiness(s);
    CHECK(m >= 0 && (m & UTPT_EOF) && (m & UTPT_READABLE));
    CHECK(wait_fd(fd, 0)); /* EOF keeps the descriptor readable */
    CHECK(utpt_read(s, buf, 10, 0) == 0);
    cross_type_misuse(srv, s);
    reply = sum;
    CHECK(utpt_write(s, &reply, sizeof reply, 5000) == (ssize_t)sizeof reply);
    CHECK(utpt_close(s) == 0);
    pthread_join(th, NULL);
    CHECK(ca.ok);
    CHECK(ca.reply == sum);
    CHECK(ca.connect_s < 2.0);

    /* the closed socket is a tombstone */
    errno = 0;
    CHECK(utpt_read(s, buf, 10, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_write(s, buf, 10, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_close(s) == -1 && errno == EBADF);
    errno = 0;
    CHECK(utpt_fd(s) == -1 && errno == EBADF);
    CHECK(utpt_context_close(srv, 10000) == 0);
    errno = 0;
    CHECK(utpt_accept(srv, 0, NULL, NULL) == NULL && errno == EBADF);
    errno = 0;
    CHECK(utpt_context_close(srv, 0) == -1 && errno == EBADF);
    printf("transfer: %zu bytes byte-exact in %.2f s (%.1f MB/s), %d polls, %d spurious\n", got,
           secs, (double)got / secs / 1e6, rounds, spurious);
    free(buf);
}

/* ------------------------------------------------------------------ 3. timeouts, errno */

static void test_timeouts(void)
{
    struct sockaddr_in any = loopback(0), local;
    socklen_t len = sizeof local;
    utpt_context *srv = utpt_bind((struct sockaddr *)&any, sizeof any);
    utpt_context *cli = utpt_bind(NULL, 0);
    utpt_socket *a, *b;
    char buf[64];
    double t0;
    ssize_t n;

    CHECK(srv != NULL && cli != NULL);
    if (srv == NULL || cli == NULL) return;
    CHECK(utpt_context_local_addr(srv, (struct sockaddr *)&local, &len) == 0);
    errno = 0;
    CHECK(utpt_connect(cli, (struct sockaddr *)&local, sizeof local, 0) == NULL && errno == EINVAL);
    a = utpt_connect(cli, (struct sockaddr *)&local, sizeof local, 5000);
    CHECK(a != NULL);
    b = utpt_accept(srv, 5000, NULL, NULL);
    CHECK(b != NULL);
    if (a == NULL || b == NULL) goto out;

    errno = 0;
    CHECK(utpt_read(b, buf, sizeof buf, 0) == -1 && errno == EAGAIN);
    t0 = now_s();
    errno = 0;
    CHECK(utpt_read(b, buf, sizeof buf, 100) == -1 && errno == ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.09 && now_s() - t0 < 2.0);
    CHECK(utpt_read(b, buf, 0, 0) == 0); /* empty read */
    errno = 0;
    CHECK(utpt_read(b, NULL, 5, 0) == -1 && errno == EFAULT);
    errno = 0;
    CHECK(utpt_write(a, NULL, 5, 0) == -1 && errno == EFAULT);
    CHECK(utpt_write(a, NULL, 0, 0) == 0);
    errno = 0;
    CHECK(utpt_shutdown(a, 77) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(utpt_getpeername(a, NULL, NULL) == -1 && errno == EFAULT);

    /* the fd follows readability: set, then cleared by reading */
    {
        int fd = utpt_fd(b);
        CHECK(fd >= 0 && !wait_fd(fd, 0));
        CHECK(utpt_write(a, "ping", 4, 1000) == 4);
        CHECK(wait_fd(fd, 5000));
        n = utpt_read(b, buf, sizeof buf, 0);
        CHECK(n == 4 && memcmp(buf, "ping", 4) == 0);
        CHECK(!wait_fd(fd, 0));
        /* writable as an fd event */
        CHECK(utpt_set_fd_events(b, UTPT_WRITABLE) == 0);
        CHECK(wait_fd(fd, 0));
        CHECK(utpt_set_fd_events(b, UTPT_READABLE) == 0);
        CHECK(!wait_fd(fd, 0));
    }

    /* SHUT_WR: writes fail with EPIPE, the peer reads end of stream */
    CHECK(utpt_shutdown(a, SHUT_WR) == 0);
    errno = 0;
    CHECK(utpt_write(a, "x", 1, 0) == -1 && errno == EPIPE);
    CHECK(utpt_read(b, buf, sizeof buf, 5000) == 0);
    /* SHUT_RD: reads return 0 */
    CHECK(utpt_write(b, "late", 4, 1000) == 4);
    CHECK(utpt_shutdown(a, SHUT_RD) == 0);
    CHECK(utpt_read(a, buf, sizeof buf, 0) == 0);

out:
    if (a) CHECK(utpt_close(a) == 0);
    if (b) CHECK(utpt_close(b) == 0);
    CHECK(utpt_context_close(cli, 10000) == 0);
    CHECK(utpt_context_close(srv, 10000) == 0);
}

/* ------------------------------------------------------------------ 4. refused */

static void test_refused(void)
{
    /* a port that was free a moment ago: bind a UDP socket, note it, close it */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof sin;
    utpt_context *cli;
    utpt_socket *s;
    double t0;

    CHECK(u >= 0);
    CHECK(bind(u, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(u, (struct sockaddr *)&sin, &len) == 0);
    close(u);
    cli = utpt_bind(NULL, 0);
    CHECK(cli != NULL);
    if (cli == NULL) return;
    t0 = now_s();
    errno = 0;
    s = utpt_connect(cli, (struct sockaddr *)&sin, sizeof sin, 10000);
    CHECK(s == NULL && errno == ECONNREFUSED);
    CHECK(now_s() - t0 < 3.0);
    printf("refused: connect to closed port %u -> %s in %.3f s\n", ntohs(sin.sin_port),
           strerror(errno), now_s() - t0);
    /* Not waited for: utp-core's runtime keeps a connection whose connect
     * failed until the linger time runs out (about 31 s) before its I/O
     * thread exits. The handle itself is released at once. */
    CHECK(utpt_context_close(cli, 0) == 0);
}

/* ------------------------------------------------------------------ 5. close wakes accept */

static void *blocked_accept(void *p)
{
    utpt_context *c = p;
    static int err;
    utpt_socket *s = utpt_accept(c, -1, NULL, NULL);
    err = s == NULL ? errno : 0;
    return &err;
}

static void test_close_wakes_accept(void)
{
    struct sockaddr_in any = loopback(0);
    utpt_context *c = utpt_bind((struct sockaddr *)&any, sizeof any);
    pthread_t th;
    void *res;
    double t0;
    CHECK(c != NULL);
    if (c == NULL) return;
    CHECK(pthread_create(&th, NULL, blocked_accept, c) == 0);
    usleep(50000);
    t0 = now_s();
    CHECK(utpt_context_close(c, 5000) == 0);
    pthread_join(th, &res);
    CHECK(*(int *)res == EBADF);
    CHECK(now_s() - t0 < 2.0);
}

int main(int argc, char **argv)
{
    if (argc > 1) total_bytes = (size_t)strtoull(argv[1], NULL, 10);
    {
        static const struct {
            const char *name;
            void (*fn)(void);
        } tests[] = {
            {"null/garbage arguments", test_null_everywhere},
            {"transfer", test_transfer},
            {"timeouts and errno", test_timeouts},
            {"refused", test_refused},
            {"close wakes accept", test_close_wakes_accept},
        };
        size_t i;
        for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
            double t0 = now_s();
            tests[i].fn();
            printf("%-24s %.2f s\n", tests[i].name, now_s() - t0);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
