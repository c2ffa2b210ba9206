/*
 * utpt_echo: the threaded C API (utp_threaded.h) -- no event loop to write,
 * no callbacks; the library runs the UDP socket on its own I/O thread.
 *
 *   utpt_echo -l PORT            serve: echo every byte back, many clients
 *                                at once, multiplexed with poll() on
 *                                utpt_context_fd / utpt_fd
 *   utpt_echo HOST PORT MESSAGE  send MESSAGE, print the echo, exit 0
 *
 * Build: make -C examples/c (needs cargo build --release -p utp-ffi first).
 */
#include "utp_threaded.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 64

static int serve(const char *port)
{
    struct addrinfo hints, *ai;
    utpt_context *ctx;
    utpt_socket *clients[MAX_CLIENTS];
    struct pollfd pfd[MAX_CLIENTS + 1];
    int n = 0, i;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(NULL, port, &hints, &ai) != 0) return 1;
    ctx = utpt_bind(ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (ctx == NULL) {
        perror("utpt_bind");
        return 1;
    }
    pfd[0].fd = utpt_context_fd(ctx); /* readable: a connection to accept */
    pfd[0].events = POLLIN;
    for (;;) {
        if (poll(pfd, (nfds_t)n + 1, -1) < 0 && errno != EINTR) break;
        if ((pfd[0].revents & POLLIN) && n < MAX_CLIENTS) {
            utpt_socket *s = utpt_accept(ctx, 0, NULL, NULL);
            if (s != NULL) {
                clients[n] = s;
                pfd[n + 1].fd = utpt_fd(s); /* readable: data, EOF or error */
                pfd[n + 1].events = POLLIN;
                pfd[n + 1].revents = 0;
                n++;
            }
        }
        for (i = n; i >= 1; i--) {
            char buf[4096];
            ssize_t got, off = 0;
            if (!(pfd[i].revents & POLLIN)) continue;
            got = utpt_read(clients[i - 1], buf, sizeof buf, 0);
            if (got < 0 && errno == EAGAIN) continue;
            while (got > 0 && off < got) { /* echo it all back */
                ssize_t w = utpt_write(clients[i - 1], buf + off, (size_t)(got - off), 5000);
                if (w < 0) break;
                off += w;
            }
            if (got <= 0 || off < got) { /* end of stream or error: done */
                utpt_close(clients[i - 1]);
                clients[i - 1] = clients[n - 1];
                pfd[i] = pfd[n];
                n--;
            }
        }
    }
    utpt_context_close(ctx, 0);
    return 1;
}

static int client(const char *host, const char *port, const char *message)
{
    struct addrinfo hints, *ai;
    utpt_context *ctx;
    utpt_socket *s;
    size_t len = strlen(message), off = 0;
    char buf[4096];
    ssize_t got;
    int rc = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve %s\n", host);
        return 1;
    }
    ctx = utpt_bind(NULL, 0); /* any local port */
    s = ctx ? utpt_connect(ctx, ai->ai_addr, ai->ai_addrlen, 5000) : NULL;
    freeaddrinfo(ai);
    if (s == NULL) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 1;
    }
    while (off < len) {
        ssize_t w = utpt_write(s, message + off, len - off, 5000);
        if (w < 0) {
            perror("utpt_write");
            return 1;
        }
        off += (size_t)w;
    }
    utpt_shutdown(s, SHUT_WR); /* the server sees end of stream, echoes, closes */
    while ((got = utpt_read(s, buf, sizeof buf, 5000)) > 0) fwrite(buf, 1, (size_t)got, stdout);
    if (got < 0) {
        perror("utpt_read");
        rc = 1;
    }
    utpt_close(s);
    utpt_context_close(ctx, 5000); /* let the closing handshake finish */
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "-l") == 0) return serve(argv[2]);
    if (argc == 4) return client(argv[1], argv[2], argv[3]);
    fprintf(stderr, "usage: %s -l PORT | %s HOST PORT MESSAGE\n", argv[0], argv[0]);
    return 2;
}
