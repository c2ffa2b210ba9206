/*
 * utpt_bench: bulk transfer and ping-pong over the threaded C API
 * (utp_threaded.h), for bench/harness.py. Same roles and reports as the
 * binding benchmarks in bench/bindings/.
 *
 *   utpt_bench recv HOST PORT BYTES REPORT   accept one connection, read until
 *                                            end of stream; REPORT gets
 *                                            bytes=, exact=, first_ns=, done_ns=
 *   utpt_bench send HOST PORT BYTES STAMP    STAMP gets the start time (ns),
 *                                            then BYTES in 1 MiB writes, FIN,
 *                                            and the context closes with a wait
 *   utpt_bench pp-server HOST PORT           echo server (runs until killed)
 *   utpt_bench pp-client HOST PORT COUNT SIZE  COUNT/10 warm-up round trips,
 *                                            COUNT measured; key=value on stdout
 *
 * Times are CLOCK_REALTIME nanoseconds, as the Rust benchmark writes them.
 */
#include "utp_threaded.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define CHUNK (1 << 20)

static void die(const char *what)
{
    fprintf(stderr, "utpt_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static double mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static struct sockaddr_in addr_of(const char *host, const char *port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "utpt_bench: bad IPv4 address %s\n", host);
        exit(2);
    }
    return a;
}

static void write_all(utpt_socket *s, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = utpt_write(s, p, n, -1);
        if (w < 0) die("utpt_write");
        p += w;
        n -= (size_t)w;
    }
}

static int cmd_recv(char **av)
{
    struct sockaddr_in a = addr_of(av[0], av[1]);
    unsigned long long want = strtoull(av[2], NULL, 10), got = 0, first = 0;
    utpt_context *c = utpt_bind((struct sockaddr *)&a, sizeof a);
    if (!c) die("utpt_bind");
    utpt_socket *s = utpt_accept(c, -1, NULL, NULL);
    if (!s) die("utpt_accept");
    unsigned char *buf = malloc(CHUNK);
    for (;;) {
        ssize_t n = utpt_read(s, buf, CHUNK, -1);
        if (n < 0) die("utpt_read");
        if (n == 0) break;
        if (!first) first = now_ns();
        got += (unsigned long long)n;
    }
    unsigned long long done = now_ns();
    FILE *f = fopen(av[3], "w");
    if (!f) die(av[3]);
    fprintf(f, "bytes=%llu\nexact=%s\nfirst_ns=%llu\ndone_ns=%llu\n", got,
            got == want ? "yes" : "no", first, done);
    fclose(f);
    utpt_close(s);
    utpt_context_close(c, 2000);
    free(buf);
    return got == want ? 0 : 1;
}

static int cmd_send(char **av)
{
    struct sockaddr_in a = addr_of(av[0], av[1]);
    unsigned long long left = strtoull(av[2], NULL, 10);
    FILE *f = fopen(av[3], "w");
    if (!f) die(av[3]);
    fprintf(f, "%llu\n", now_ns());
    fclose(f);
    utpt_context *c = utpt_bind(NULL, 0);
    if (!c) die("utpt_bind");
    utpt_socket *s = utpt_connect(c, (struct sockaddr *)&a, sizeof a, 10000);
    if (!s) die("utpt_connect");
    unsigned char *buf = malloc(CHUNK);
    for (size_t i = 0; i < CHUNK; i++) buf[i] = (unsigned char)(i * 7);
    while (left > 0) {
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        write_all(s, buf, n);
        left -= n;
    }
    if (utpt_shutdown(s, SHUT_WR) != 0) die("utpt_shutdown");
    utpt_close(s);
    if (utpt_context_close(c, 60000) != 0) die("utpt_context_close");
    free(buf);
    return 0;
}

static void *echo(void *arg)
{
    utpt_socket *s = arg;
    unsigned char buf[65536];
    for (;;) {
        ssize_t n = utpt_read(s, buf, sizeof buf, -1);
        if (n <= 0) break;
        write_all(s, buf, (size_t)n);
    }
    utpt_close(s);
    return NULL;
}

static _Noreturn void cmd_pp_server(char **av)
{
    struct sockaddr_in a = addr_of(av[0], av[1]);
    utpt_context *c = utpt_bind((struct sockaddr *)&a, sizeof a);
    if (!c) die("utpt_bind");
    for (;;) {
        utpt_socket *s = utpt_accept(c, -1, NULL, NULL);
        if (!s) die("utpt_accept");
        pthread_t t;
        if (pthread_create(&t, NULL, echo, s) != 0) die("pthread_create");
        pthread_detach(t);
    }
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static int cmd_pp_client(char **av)
{
    struct sockaddr_in a = addr_of(av[0], av[1]);
    long count = atol(av[2]), warm = count / 10 > 0 ? count / 10 : 1;
    size_t size = (size_t)atol(av[3]);
    if (count <= 0 || size == 0 || size > CHUNK) {
        fprintf(stderr, "utpt_bench: bad COUNT or SIZE\n");
        return 2;
    }
    utpt_context *c = utpt_bind(NULL, 0);
    if (!c) die("utpt_bind");
    utpt_socket *s = utpt_connect(c, (struct sockaddr *)&a, sizeof a, 10000);
    if (!s) die("utpt_connect");
    unsigned char *msg = malloc(size), *back = malloc(size);
    double *rtt = malloc(sizeof(double) * (size_t)count);
    for (long i = 0; i < count + warm; i++) {
        for (size_t k = 0; k < size; k++) msg[k] = (unsigned char)(i * 31 + (long)k);
        double t = mono_us();
        write_all(s, msg, size);
        size_t got = 0;
        while (got < size) {
            ssize_t n = utpt_read(s, back + got, size - got, -1);
            if (n <= 0) die("utpt_read");
            got += (size_t)n;
        }
        if (memcmp(msg, back, size) != 0) {
            fprintf(stderr, "utpt_bench: echo differs\n");
            return 1;
        }
        if (i >= warm) rtt[i - warm] = mono_us() - t;
    }
    qsort(rtt, (size_t)count, sizeof(double), cmp_double);
#define Q(p) rtt[(long)((count - 1) * (p) + 0.5)]
    printf("count=%ld\nrtt_us_p50=%.1f\nrtt_us_p90=%.1f\nrtt_us_p99=%.1f\nrtt_us_min=%.1f\nrtt_us_max=%.1f\n",
           count, Q(0.5), Q(0.9), Q(0.99), rtt[0], rtt[count - 1]);
    utpt_shutdown(s, SHUT_WR);
    utpt_close(s);
    utpt_context_close(c, 2000);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "recv")) return cmd_recv(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "send")) return cmd_send(argv + 2);
    if (argc == 4 && !strcmp(argv[1], "pp-server")) cmd_pp_server(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "pp-client")) return cmd_pp_client(argv + 2);
    fprintf(stderr,
            "usage: utpt_bench recv HOST PORT BYTES REPORT | send HOST PORT BYTES STAMP |\n"
            "                  pp-server HOST PORT | pp-client HOST PORT COUNT SIZE\n");
    return 2;
}
