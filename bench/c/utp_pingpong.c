/*
 * utp_pingpong: small-message round trips over the libutp C API.
 * Built twice by bench/harness.py: against REAL libutp and against our
 * libutp (utp-ffi); the source is the same.
 *
 *   utp_pingpong -l PORT                      echo server (runs until killed)
 *   utp_pingpong HOST PORT COUNT SIZE         client: COUNT/10 warm-up round
 *                                             trips, then COUNT measured ones;
 *                                             prints key=value percentiles
 *
 * Event loop as in upstream ucat: poll() on the UDP socket, drain it into
 * utp_process_udp(), then utp_issue_deferred_acks() and utp_check_timeouts().
 */
#include "utp.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int fd, serving, done, failed;
static size_t msg_size, got;
static long count, warm, round_no;
static unsigned char *msg;
static double t_sent, *rtts;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static uint64 on_sendto(utp_callback_arguments *a)
{
    sendto(fd, a->buf, a->len, 0, a->address, a->address_len);
    return 0;
}

static void send_next(utp_socket *s)
{
    size_t i;
    for (i = 0; i < msg_size; i++) msg[i] = (unsigned char)(round_no * 31 + i);
    got = 0;
    t_sent = now_us();
    if (utp_write(s, msg, msg_size) != (ssize_t)msg_size) {
        fprintf(stderr, "utp_pingpong: short utp_write\n");
        failed = done = 1;
    }
}

static uint64 on_read(utp_callback_arguments *a)
{
    if (serving) {
        utp_write(a->socket, (void *)a->buf, a->len);
    } else {
        size_t i;
        for (i = 0; i < a->len; i++)
            if (got + i >= msg_size || a->buf[i] != msg[got + i]) failed = 1;
        got += a->len;
        if (failed) {
            fprintf(stderr, "utp_pingpong: echo differs\n");
            done = 1;
        } else if (got == msg_size) {
            double rtt = now_us() - t_sent;
            if (round_no >= warm) rtts[round_no - warm] = rtt;
            round_no++;
            if (round_no < warm + count)
                send_next(a->socket);
            else
                utp_close(a->socket);
        }
    }
    utp_read_drained(a->socket);
    return 0;
}

static uint64 on_state(utp_callback_arguments *a)
{
    switch (a->state) {
    case UTP_STATE_CONNECT:
        if (!serving) send_next(a->socket);
        break;
    case UTP_STATE_EOF:
        utp_close(a->socket);
        break;
    case UTP_STATE_DESTROYING:
        if (!serving) done = 1;
        break;
    }
    return 0;
}

static uint64 on_error(utp_callback_arguments *a)
{
    fprintf(stderr, "utp_pingpong: error %d\n", a->error_code);
    utp_close(a->socket);
    if (!serving) failed = done = 1;
    return 0;
}

static uint64 on_accept(utp_callback_arguments *a)
{
    (void)a;
    return 0;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    struct sockaddr_in local;
    utp_context *ctx;

    if (argc == 3 && strcmp(argv[1], "-l") == 0) {
        serving = 1;
    } else if (argc != 5) {
        fprintf(stderr, "usage: %s -l PORT | %s HOST PORT COUNT SIZE\n", argv[0], argv[0]);
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&local, 0, sizeof local);
    local.sin_family = AF_INET;
    local.sin_port = htons(serving ? (unsigned short)atoi(argv[2]) : 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
        perror("utp_pingpong: socket/bind");
        return 1;
    }
    ctx = utp_init(2);
    utp_set_callback(ctx, UTP_SENDTO, &on_sendto);
    utp_set_callback(ctx, UTP_ON_READ, &on_read);
    utp_set_callback(ctx, UTP_ON_STATE_CHANGE, &on_state);
    utp_set_callback(ctx, UTP_ON_ERROR, &on_error);
    if (serving) utp_set_callback(ctx, UTP_ON_ACCEPT, &on_accept);

    if (!serving) {
        struct addrinfo hints, *res;
        count = atol(argv[3]);
        msg_size = (size_t)atol(argv[4]);
        warm = count / 10 > 0 ? count / 10 : 1;
        if (count < 1 || msg_size < 1) return 2;
        msg = malloc(msg_size);
        rtts = calloc((size_t)count, sizeof *rtts);
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        if (getaddrinfo(argv[1], argv[2], &hints, &res) != 0) return 1;
        utp_connect(utp_create_socket(ctx), res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    while (!done) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            unsigned char buf[4096];
            struct sockaddr_storage src;
            socklen_t srclen;
            ssize_t n;
            for (;;) {
                srclen = sizeof src;
                n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, &srclen);
                if (n < 0) break;
                utp_process_udp(ctx, buf, (size_t)n, (struct sockaddr *)&src, srclen);
            }
            utp_issue_deferred_acks(ctx);
        }
        utp_check_timeouts(ctx);
    }
    if (!serving) {
        long k = round_no - warm;
        if (failed || k < count) {
            fprintf(stderr, "utp_pingpong: failed after %ld round trips\n", round_no);
            return 1;
        }
        qsort(rtts, (size_t)count, sizeof *rtts, cmp);
#define Q(p) rtts[(long)((count - 1) * (p) + 0.5)]
        printf("count=%ld\nrtt_us_p50=%.1f\nrtt_us_p90=%.1f\nrtt_us_p99=%.1f\nrtt_us_min=%.1f\nrtt_us_max=%.1f\n",
               count, Q(0.5), Q(0.9), Q(0.99), Q(0.0), Q(1.0));
    }
    utp_destroy(ctx);
    return 0;
}
