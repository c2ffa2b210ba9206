/*
 * utp_echo: a minimal caller-driven libutp program (works with our libutp
 * and with the original one, unchanged).
 *
 *   utp_echo -l PORT            serve: echo every byte back, forever
 *   utp_echo HOST PORT MESSAGE  send MESSAGE, print the echo, close, exit 0
 *
 * The application owns the UDP socket and the event loop: every datagram
 * goes to utp_process_udp(), utp_issue_deferred_acks() runs once the socket
 * is drained, utp_check_timeouts() runs at least every 500 ms, and the
 * library transmits through the UTP_SENDTO callback.
 */
#include "utp.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fd;               /* the UDP socket */
static int serving;          /* -l mode */
static const char *message;  /* client: what to send */
static size_t echoed;        /* client: bytes of echo received */
static int done, exit_code = 1;

static uint64 on_sendto(utp_callback_arguments *a)
{
    sendto(fd, a->buf, a->len, 0, a->address, a->address_len);
    return 0;
}

static uint64 on_read(utp_callback_arguments *a)
{
    if (serving) {
        utp_write(a->socket, (void *)a->buf, a->len); /* re-entrant call: fine */
    } else {
        fwrite(a->buf, 1, a->len, stdout);
        echoed += a->len;
        if (echoed >= strlen(message)) {
            putchar('\n');
            exit_code = 0;
            utp_close(a->socket); /* released later, in utp_check_timeouts */
        }
    }
    utp_read_drained(a->socket);
    return 0;
}

static uint64 on_accept(utp_callback_arguments *a)
{
    fprintf(stderr, "utp_echo: connection from %s:%d\n",
            inet_ntoa(((const struct sockaddr_in *)a->address)->sin_addr),
            ntohs(((const struct sockaddr_in *)a->address)->sin_port));
    return 0;
}

static uint64 on_state(utp_callback_arguments *a)
{
    switch (a->state) {
    case UTP_STATE_CONNECT: /* client connected: send the message */
        utp_write(a->socket, (void *)message, strlen(message));
        break;
    case UTP_STATE_EOF: /* peer finished sending */
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
    fprintf(stderr, "utp_echo: %s\n", utp_error_code_names[a->error_code]);
    utp_close(a->socket);
    if (!serving) done = 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in local;
    utp_context *ctx;

    if (argc == 3 && strcmp(argv[1], "-l") == 0) {
        serving = 1;
    } else if (argc != 4) {
        fprintf(stderr, "usage: %s -l PORT | %s HOST PORT MESSAGE\n", argv[0], argv[0]);
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&local, 0, sizeof local);
    local.sin_family = AF_INET;
    local.sin_port = htons(serving ? (unsigned short)atoi(argv[2]) : 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
        perror("utp_echo: socket/bind");
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
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        if (getaddrinfo(argv[1], argv[2], &hints, &res) != 0) {
            fprintf(stderr, "utp_echo: cannot resolve %s\n", argv[1]);
            return 1;
        }
        message = argv[3];
        utp_connect(utp_create_socket(ctx), res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }

    while (!done) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) > 0) {
            unsigned char buf[4096];
            struct sockaddr_storage src;
            socklen_t srclen;
            ssize_t n;
            for (;;) {
                srclen = sizeof src;
                n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, &srclen);
                if (n < 0) break; /* EAGAIN: drained (ICMP errors also end up here) */
                if (!utp_process_udp(ctx, buf, (size_t)n, (struct sockaddr *)&src, srclen))
                    fprintf(stderr, "utp_echo: ignored a non-uTP datagram\n");
            }
            utp_issue_deferred_acks(ctx);
        }
        utp_check_timeouts(ctx);
    }
    utp_destroy(ctx);
    return exit_code;
}
