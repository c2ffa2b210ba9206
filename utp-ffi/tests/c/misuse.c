/*
 * Misuse and lifecycle tests of the libutp C API (our libutp.so / libutp.a).
 * Run by scripts/test-ffi.sh under Valgrind (--error-exitcode=1).
 *
 * 1. NULL and garbage arguments everywhere: every call returns libutp's
 *    failure value, nothing crashes.
 * 2. Two in-process contexts joined by a fake network (SENDTO queues the
 *    datagram, a pump delivers it) on a fake clock: handshake, data, half
 *    close, re-entrant calls from callbacks, DESTROYING exactly once, handles
 *    used after DESTROYING, RESET / ICMP / timeout errors, utp_destroy.
 * 3. libutp's full-close sequence (contract 8.5): the first closer is
 *    destroyed once its FIN is acked; the late closer gets ON_ERROR
 *    (ECONNRESET), then DESTROYING.
 * 4. UTP_GET_READ_BUFFER_SIZE + utp_read_drained close and reopen the
 *    advertised window (seen in the wnd_size field of B's datagrams), and
 *    utp_setsockopt on live sockets (RCVBUF inside ON_ACCEPT, TARGET_DELAY,
 *    SNDBUF after connect).
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "utp.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (cond) {                                                         \
            passed++;                                                       \
        } else {                                                            \
            failed++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                   \
    } while (0)

/* ------------------------------------------------------------------ fake network */

#define MAXQ 4096
struct dgram {
    utp_context *from;
    size_t len;
    unsigned char data[1500];
};
static struct dgram queue[MAXQ];
static int qhead, qtail;
static int drop_all; /* lose every datagram */
static uint64 now_us = 1000000000ULL;

static utp_context *A, *B;
static struct sockaddr_in addr_a, addr_b;

static uint64 cb_us(utp_callback_arguments *a) { (void)a; return now_us; }
static uint64 cb_ms(utp_callback_arguments *a) { (void)a; return now_us / 1000; }

static int sends, sends_b;
static unsigned long last_wnd_b; /* wnd_size field of B's last datagram */
static uint64 cb_sendto(utp_callback_arguments *a)
{
    sends++;
    if (a->socket != NULL) failed++; /* SENDTO always gets socket NULL */
    if (a->context == B && a->len >= 20) {
        sends_b++;
        last_wnd_b = ((unsigned long)a->buf[12] << 24) | ((unsigned long)a->buf[13] << 16) |
                     ((unsigned long)a->buf[14] << 8) | a->buf[15];
    }
    if (drop_all || (qtail + 1) % MAXQ == qhead || a->len > sizeof queue[0].data) return 0;
    queue[qtail].from = a->context;
    queue[qtail].len = a->len;
    memcpy(queue[qtail].data, a->buf, a->len);
    qtail = (qtail + 1) % MAXQ;
    return 0;
}

/* deliver queued datagrams (also those queued meanwhile); tick the clock */
static void pump(int rounds)
{
    int r;
    for (r = 0; r < rounds; r++) {
        while (qhead != qtail) {
            struct dgram d = queue[qhead];
            utp_context *to = d.from == A ? B : A;
            const struct sockaddr_in *src = d.from == A ? &addr_a : &addr_b;
            qhead = (qhead + 1) % MAXQ;
            CHECK(utp_process_udp(to, d.data, d.len, (const struct sockaddr *)src, sizeof *src) == 1);
        }
        utp_issue_deferred_acks(A);
        utp_issue_deferred_acks(B);
        now_us += 10000;
        utp_check_timeouts(A);
        utp_check_timeouts(B);
    }
}

/* ------------------------------------------------------------------ callbacks */

static utp_socket *sa, *sb; /* A's outgoing, B's accepted */
static int connects, accepts, eofs_a, eofs_b, destroys_a, destroys_b, writables;
static int errors[3];
static size_t got_b, got_a;
static unsigned char rx[300000];
static int close_on_eof_b;

static int reset_before_destroy_b; /* ON_ERROR(ECONNRESET) came before B's DESTROYING */
static uint64 cb_state(utp_callback_arguments *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    switch (a->state) {
    case UTP_STATE_CONNECT:
        connects++;
        /* re-entrant calls from inside a callback */
        CHECK(utp_getpeername(a->socket, (struct sockaddr *)&ss, &len) == 0);
        CHECK(len == sizeof(struct sockaddr_in));
        CHECK(utp_get_stats(a->socket) != NULL);
        CHECK(utp_get_context(a->socket) == a->context);
        CHECK(utp_write(a->socket, (void *)"hello", 5) == 5);
        break;
    case UTP_STATE_WRITABLE:
        writables++;
        break;
    case UTP_STATE_EOF:
        if (a->context == A) eofs_a++;
        else {
            eofs_b++;
            if (close_on_eof_b) utp_close(a->socket);
        }
        break;
    case UTP_STATE_DESTROYING:
        CHECK(utp_get_stats(a->socket) != NULL);
        if (a->context == A) destroys_a++;
        else {
            destroys_b++;
            reset_before_destroy_b = errors[UTP_ECONNRESET] > 0;
        }
        break;
    default:
        failed++;
    }
    return 0;
}

/* GET_READ_BUFFER_SIZE of B: bytes B's application holds unconsumed */
static int hold_b;
static size_t held_b;
static int rbs_calls;
static uint64 cb_read_buffer_size(utp_callback_arguments *a)
{
    rbs_calls++;
    CHECK(a->context == B && a->socket != NULL);
    return held_b;
}

static uint64 cb_read(utp_callback_arguments *a)
{
    CHECK(a->len > 0 && a->buf != NULL);
    if (a->context == B) {
        if (got_b + a->len <= sizeof rx) memcpy(rx + got_b, a->buf, a->len);
        got_b += a->len;
        if (hold_b) held_b += a->len;
    } else {
        got_a += a->len;
    }
    utp_read_drained(a->socket); /* re-entrant */
    return 0;
}

static int firewall_calls, firewall_reject;
static uint64 cb_firewall(utp_callback_arguments *a)
{
    firewall_calls++;
    CHECK(a->socket == NULL && a->address != NULL && a->address_len == sizeof(struct sockaddr_in));
    return firewall_reject;
}

static int rcvbuf_on_accept; /* utp_setsockopt(UTP_RCVBUF) inside ON_ACCEPT */
static uint64 cb_accept(utp_callback_arguments *a)
{
    accepts++;
    sb = a->socket;
    if (rcvbuf_on_accept) {
        CHECK(utp_setsockopt(sb, UTP_RCVBUF, rcvbuf_on_accept) == 0);
        CHECK(utp_getsockopt(sb, UTP_RCVBUF) == rcvbuf_on_accept);
    }
    CHECK(a->address_len == sizeof(struct sockaddr_in));
    CHECK(utp_get_userdata(sb) == NULL);
    utp_set_userdata(sb, &accepts);
    return 0;
}

static uint64 cb_error(utp_callback_arguments *a)
{
    if (a->error_code >= 0 && a->error_code < 3) errors[a->error_code]++;
    else failed++;
    return 0;
}

static void setup_ctx(utp_context *c)
{
    utp_set_callback(c, UTP_GET_MICROSECONDS, &cb_us);
    utp_set_callback(c, UTP_GET_MILLISECONDS, &cb_ms);
    utp_set_callback(c, UTP_SENDTO, &cb_sendto);
    utp_set_callback(c, UTP_ON_STATE_CHANGE, &cb_state);
    utp_set_callback(c, UTP_ON_READ, &cb_read);
    utp_set_callback(c, UTP_ON_ERROR, &cb_error);
}

static void reset_counters(void)
{
    connects = accepts = eofs_a = eofs_b = destroys_a = destroys_b = writables = 0;
    errors[0] = errors[1] = errors[2] = 0;
    got_a = got_b = 0;
    sa = sb = NULL;
    qhead = qtail = 0;
    close_on_eof_b = 0;
    drop_all = 0;
    hold_b = 0;
    held_b = 0;
    rbs_calls = 0;
    rcvbuf_on_accept = 0;
    reset_before_destroy_b = 0;
}

/* ------------------------------------------------------------------ tests */

static void test_null_everywhere(void)
{
    unsigned char pkt[64];
    uint32 o = 1, t = 1, g = 1;
    struct utp_iovec iov = {0, 0};
    socklen_t sl = 16;
    struct sockaddr_in sin;
    memset(pkt, 0, sizeof pkt);
    memset(&sin, 0, sizeof sin);

    CHECK(utp_init(0) == NULL);
    CHECK(utp_init(1) == NULL);
    CHECK(utp_init(3) == NULL);
    CHECK(utp_init(-1) == NULL);
    utp_destroy(NULL);
    utp_set_callback(NULL, UTP_LOG, &cb_us);
    CHECK(utp_context_set_userdata(NULL, &o) == NULL);
    CHECK(utp_context_get_userdata(NULL) == NULL);
    CHECK(utp_context_set_option(NULL, UTP_SNDBUF, 1) == -1);
    CHECK(utp_context_get_option(NULL, UTP_SNDBUF) == -1);
    CHECK(utp_process_udp(NULL, pkt, sizeof pkt, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_icmp_error(NULL, pkt, sizeof pkt, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_icmp_fragmentation(NULL, pkt, sizeof pkt, (struct sockaddr *)&sin, sizeof sin, 1000) == 0);
    utp_check_timeouts(NULL);
    utp_issue_deferred_acks(NULL);
    CHECK(utp_get_context_stats(NULL) == NULL);
    CHECK(utp_create_socket(NULL) == NULL);
    CHECK(utp_set_userdata(NULL, &o) == NULL);
    CHECK(utp_get_userdata(NULL) == NULL);
    CHECK(utp_setsockopt(NULL, UTP_SNDBUF, 1) == -1);
    CHECK(utp_getsockopt(NULL, UTP_SNDBUF) == -1);
    CHECK(utp_connect(NULL, (struct sockaddr *)&sin, sizeof sin) == -1);
    CHECK(utp_write(NULL, pkt, 1) == -1);
    CHECK(utp_writev(NULL, &iov, 1) == -1);
    CHECK(utp_getpeername(NULL, (struct sockaddr *)&sin, &sl) == -1);
    utp_read_drained(NULL);
    CHECK(utp_get_delays(NULL, &o, &t, &g) == -1);
    CHECK(utp_get_stats(NULL) == NULL);
    CHECK(utp_get_context(NULL) == NULL);
    utp_shutdown(NULL, SHUT_RDWR);
    utp_close(NULL);
}

static void test_context_misuse(void)
{
    utp_context *c = utp_init(2);
    utp_socket *s;
    unsigned char pkt[64];
    static const char dht[] = "d1:ad2:id20:abcdefghij0123456789e1:q4:pinge";
    struct sockaddr_in sin;
    struct sockaddr un;
    socklen_t sl = sizeof sin;
    uint32 o = 7, t = 7, g = 7;
    int i;
    struct utp_iovec iov[2];

    CHECK(c != NULL);
    /* options */
    CHECK(utp_context_get_option(c, UTP_SNDBUF) == 1048576);
    CHECK(utp_context_get_option(c, UTP_RCVBUF) == 1048576);
    CHECK(utp_context_get_option(c, UTP_TARGET_DELAY) == 100000);
    CHECK(utp_context_get_option(c, UTP_LOG_NORMAL) == 0);
    CHECK(utp_context_set_option(c, UTP_LOG_NORMAL, 5) == 0);
    CHECK(utp_context_get_option(c, UTP_LOG_NORMAL) == 1);
    for (i = -3; i < 16; i++) {
        CHECK(utp_context_set_option(c, i, 1) == -1);
        CHECK(utp_context_get_option(c, i) == -1);
    }
    CHECK(utp_context_set_option(c, UTP_ARRAY_SIZE, 1) == -1);
    CHECK(utp_context_get_option(c, INT_MAX) == -1);
    CHECK(utp_context_get_option(c, INT_MIN) == -1);
    /* out-of-range callback ids are ignored */
    utp_set_callback(c, -1, &cb_us);
    utp_set_callback(c, UTP_ARRAY_SIZE, &cb_us);
    utp_set_callback(c, 1000000, &cb_us);
    utp_set_callback(c, INT_MIN, &cb_us);
    utp_set_callback(c, UTP_TARGET_DELAY, &cb_us); /* accepted, never called */
    /* clearing a defaulted callback restores the default clock */
    utp_set_callback(c, UTP_GET_MILLISECONDS, NULL);
    utp_set_callback(c, UTP_GET_MICROSECONDS, NULL);
    utp_check_timeouts(c);
    CHECK(utp_context_set_userdata(c, &o) == &o);
    CHECK(utp_context_get_userdata(c) == &o);
    CHECK(utp_get_context_stats(c) != NULL);

    /* utp_process_udp classification */
    utp_set_callback(c, UTP_SENDTO, &cb_sendto);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(4000);
    sin.sin_addr.s_addr = htonl(0x7f000001);
    memset(pkt, 0, sizeof pkt);
    CHECK(utp_process_udp(c, NULL, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_udp(c, pkt, 20, NULL, sizeof sin) == 0);
    CHECK(utp_process_udp(c, (const byte *)dht, sizeof dht - 1, (struct sockaddr *)&sin, sizeof sin) == 0);
    pkt[0] = 0x01; /* DATA v1 */
    CHECK(utp_process_udp(c, pkt, 19, (struct sockaddr *)&sin, sizeof sin) == 0);
    pkt[0] = 0x51; /* type 5 */
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    pkt[0] = 0x02; /* version 2 */
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    pkt[0] = 0x01;
    pkt[1] = 3; /* first extension 3 */
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    pkt[1] = 0;
    pkt[3] = 77; /* DATA for an unknown connection: uTP, answered with RESET */
    sends = 0;
    qhead = qtail = 0;
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 1);
    CHECK(sends == 1);
    CHECK(qtail == 1 && queue[0].len == 20 && (queue[0].data[0] >> 4) == 3);
    pkt[1] = 1; /* SACK extension that overruns: still uTP (dropped) */
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 1);
    pkt[1] = 0;
    pkt[0] = 0x41; /* SYN without ON_ACCEPT: ignored, still 1 */
    sends = 0;
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 1);
    CHECK(sends == 0);
    sin.sin_family = AF_UNIX; /* unusable source address */
    pkt[0] = 0x01;
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    sin.sin_family = AF_INET;
    CHECK(utp_process_udp(c, pkt, 20, (struct sockaddr *)&sin, 4) == 0);
    /* ICMP for nothing we sent */
    CHECK(utp_process_icmp_error(c, pkt, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_icmp_error(c, pkt, 5, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_icmp_error(c, NULL, 20, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(utp_process_icmp_fragmentation(c, pkt, 20, NULL, 0, 1400) == 0);

    /* an unconnected socket */
    s = utp_create_socket(c);
    CHECK(s != NULL);
    CHECK(utp_get_context(s) == c);
    CHECK(utp_getsockopt(s, UTP_SNDBUF) == 1048576);
    CHECK(utp_setsockopt(s, UTP_SNDBUF, 65536) == 0);
    CHECK(utp_getsockopt(s, UTP_SNDBUF) == 65536);
    CHECK(utp_setsockopt(s, UTP_LOG_NORMAL, 1) == -1);
    CHECK(utp_getsockopt(s, UTP_LOG_NORMAL) == -1);
    CHECK(utp_setsockopt(s, -5, 1) == -1);
    CHECK(utp_getsockopt(s, 99) == -1);
    CHECK(utp_write(s, (void *)"x", 1) == 0);   /* not connected */
    CHECK(utp_write(s, NULL, 0) == 0);
    CHECK(utp_write(s, NULL, 10) == -1);
    CHECK(utp_writev(s, NULL, 1) == -1);
    iov[0].iov_base = (void *)"ab";
    iov[0].iov_len = 2;
    iov[1].iov_base = NULL;
    iov[1].iov_len = 3;
    CHECK(utp_writev(s, iov, 0) == -1);
    CHECK(utp_writev(s, iov, 2) == -1);       /* NULL base with a length */
    CHECK(utp_writev(s, iov, 1) == 0);
    CHECK(utp_getpeername(s, (struct sockaddr *)&sin, &sl) == -1);
    CHECK(utp_getpeername(s, NULL, &sl) == -1);
    CHECK(utp_get_delays(s, &o, &t, &g) == -1);
    CHECK(o == 0 && t == 0 && g == 0);
    CHECK(utp_get_delays(s, NULL, NULL, NULL) == -1);
    CHECK(utp_connect(s, NULL, sizeof sin) == -1);
    CHECK(utp_connect(s, (struct sockaddr *)&sin, 3) == -1);
    memset(&un, 0, sizeof un);
    un.sa_family = AF_UNIX;
    CHECK(utp_connect(s, &un, sizeof un) == -1);
    utp_shutdown(s, SHUT_WR);
    utp_shutdown(s, 12345);
    utp_read_drained(s);
    CHECK(utp_set_userdata(s, &t) == &t);
    CHECK(utp_get_userdata(s) == &t);
    utp_close(s);
    /* never connected: released at once; the handle is now a tombstone */
    CHECK(utp_get_userdata(s) == NULL);
    CHECK(utp_write(s, (void *)"x", 1) == -1);
    CHECK(utp_connect(s, (struct sockaddr *)&sin, sizeof sin) == -1);
    CHECK(utp_get_context(s) == NULL);
    utp_close(s); /* double close */

    /* sockets left open are released by utp_destroy */
    s = utp_create_socket(c);
    CHECK(s != NULL);
    utp_destroy(c);
    /* the context handle is a tombstone now */
    CHECK(utp_context_get_userdata(c) == NULL);
    CHECK(utp_create_socket(c) == NULL);
    CHECK(utp_get_userdata(s) == NULL);
    utp_check_timeouts(c);
    utp_destroy(c); /* double destroy */
}

static void test_transfer_and_close(void)
{
    unsigned char *data = malloc(sizeof rx);
    size_t i, off = 0;
    int rounds;
    utp_socket *old_a, *old_b;
    utp_socket_stats *st;
    uint32 ours, theirs, age;

    reset_counters();
    for (i = 0; i < sizeof rx; i++) data[i] = (unsigned char)(i * 7 + (i >> 9));
    A = utp_init(2);
    B = utp_init(2);
    setup_ctx(A);
    setup_ctx(B);
    utp_set_callback(B, UTP_ON_ACCEPT, &cb_accept);
    utp_set_callback(B, UTP_ON_FIREWALL, &cb_firewall);

    /* firewall rejects: silently ignored */
    firewall_reject = 1;
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == -1); /* twice: -1 and closed */
    pump(3);
    CHECK(firewall_calls >= 1 && accepts == 0 && connects == 0);
    pump(60); /* 600 ms: the closed socket is released */
    CHECK(destroys_a == 1);
    CHECK(utp_get_userdata(sa) == NULL); /* tombstone */

    firewall_reject = 0;
    destroys_a = 0;
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1);
    CHECK(accepts == 1 && sb != NULL);
    CHECK(utp_get_userdata(sb) == &accepts);
    CHECK(got_b == 5 && memcmp(rx, "hello", 5) == 0);

    /* bulk data A -> B, honouring short writes and WRITABLE */
    got_b = 0;
    for (rounds = 0; rounds < 5000 && got_b < sizeof rx; rounds++) {
        while (off < sizeof rx) {
            ssize_t n = utp_write(sa, data + off, sizeof rx - off > 3000 ? 3000 : sizeof rx - off);
            CHECK(n >= 0);
            if (n <= 0) break;
            off += (size_t)n;
        }
        pump(1);
    }
    CHECK(off == sizeof rx);
    CHECK(got_b == sizeof rx && memcmp(rx, data, sizeof rx) == 0);
    st = utp_get_stats(sa);
    CHECK(st != NULL && st->nxmit > 200 && st->nbytes_xmit > sizeof rx);
    CHECK(utp_get_delays(sa, &ours, &theirs, &age) == 0);
    CHECK(utp_get_context_stats(A)->_nraw_send[3] + utp_get_context_stats(A)->_nraw_send[4] > 100);

    /* B writes back; then A half-closes: writes after shutdown return 0 */
    CHECK(utp_write(sb, (void *)"pong", 4) == 4);
    pump(3);
    CHECK(got_a == 4);
    utp_shutdown(sa, SHUT_WR);
    CHECK(utp_write(sa, (void *)"late", 4) == 0);
    pump(3);
    CHECK(eofs_b == 1);
    CHECK(utp_write(sb, (void *)"after-eof", 9) == 9); /* half-close: B can still write */
    pump(3);
    CHECK(got_a == 13);

    /* B closes on its own; A then closes: both sockets end with one DESTROYING */
    utp_close(sb);
    utp_close(sb); /* double close is a no-op */
    CHECK(utp_write(sb, (void *)"x", 1) == 0);
    pump(5);
    CHECK(eofs_a == 1);
    utp_close(sa);
    pump(100);
    CHECK(destroys_a == 1);
    CHECK(destroys_b == 1);
    old_a = sa;
    old_b = sb;
    /* handles after DESTROYING: tombstones, failure values */
    CHECK(utp_write(old_a, (void *)"x", 1) == -1);
    CHECK(utp_get_stats(old_b) == NULL);
    CHECK(utp_getsockopt(old_b, UTP_SNDBUF) == -1);
    utp_close(old_a);
    utp_shutdown(old_b, SHUT_RDWR);

    /* a RESET while connecting reports ECONNRESET (libutp quirk 8) */
    {
        unsigned char syn[20];
        struct dgram d;
        unsigned char rst[20];
        reset_counters();
        sa = utp_create_socket(A);
        CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
        CHECK(qtail == 1);
        d = queue[0];
        memcpy(syn, d.data, 20);
        qhead = qtail = 0;
        memset(rst, 0, sizeof rst);
        rst[0] = 0x31;
        rst[2] = syn[2];
        rst[3] = syn[3];
        CHECK(utp_process_udp(A, rst, 20, (struct sockaddr *)&addr_b, sizeof addr_b) == 1);
        CHECK(errors[UTP_ECONNRESET] == 1);
        CHECK(utp_write(sa, (void *)"x", 1) == 0);
        utp_close(sa);
        pump(60);
        CHECK(destroys_a == 1);

        /* ICMP port unreachable while connecting: ECONNREFUSED */
        reset_counters();
        sa = utp_create_socket(A);
        CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
        d = queue[0];
        qhead = qtail = 0;
        CHECK(utp_process_icmp_error(A, d.data, d.len, (struct sockaddr *)&addr_b, sizeof addr_b) == 1);
        CHECK(errors[UTP_ECONNREFUSED] == 1);
        CHECK(utp_process_icmp_fragmentation(A, d.data, d.len, (struct sockaddr *)&addr_b, sizeof addr_b, 1200) == 1);
        utp_close(sa);
        pump(60);
        CHECK(destroys_a == 1);

        /* nobody answers: ETIMEDOUT after the SYN give-up time */
        reset_counters();
        drop_all = 1;
        sa = utp_create_socket(A);
        CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
        pump(2500); /* 25 s of fake time */
        CHECK(errors[UTP_ETIMEDOUT] == 1);
        CHECK(destroys_a == 0); /* lingers until closed */
        utp_close(sa);
        pump(60);
        CHECK(destroys_a == 1);
        drop_all = 0;
    }

    /* utp_destroy fires DESTROYING for every registered socket */
    reset_counters();
    close_on_eof_b = 0;
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1 && accepts == 1);
    utp_destroy(A);
    utp_destroy(B);
    CHECK(destroys_a == 1 && destroys_b == 1);
    free(data);
}

/* Contract 8.5, libutp's close: A closes first and is destroyed as soon as
 * its FIN is acknowledged, without waiting for B; B closes later, A answers
 * its FIN with RESET, B gets ON_ERROR(ECONNRESET), then DESTROYING. */
static void test_libutp_close_sequence(void)
{
    int i;
    reset_counters();
    A = utp_init(2);
    B = utp_init(2);
    setup_ctx(A);
    setup_ctx(B);
    utp_set_callback(B, UTP_ON_ACCEPT, &cb_accept);
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1 && accepts == 1 && got_b == 5);

    utp_close(sa);
    CHECK(destroys_a == 0); /* never inside utp_close */
    pump(3);
    CHECK(eofs_b == 1);
    pump(60); /* past the 500 ms gate of utp_check_timeouts */
    CHECK(destroys_a == 1); /* B has not closed: A is gone anyway */
    CHECK(destroys_b == 0);
    CHECK(errors[0] + errors[1] + errors[2] == 0);

    utp_close(sb);
    for (i = 0; i < 100 && destroys_b == 0; i++) pump(1);
    CHECK(errors[UTP_ECONNRESET] == 1);
    CHECK(errors[UTP_ECONNREFUSED] == 0 && errors[UTP_ETIMEDOUT] == 0);
    CHECK(destroys_b == 1);
    CHECK(reset_before_destroy_b);
    CHECK(destroys_a == 1);
    CHECK(utp_get_userdata(sb) == NULL); /* tombstone */
    utp_destroy(A);
    utp_destroy(B);
    CHECK(destroys_a == 1 && destroys_b == 1); /* nothing left to destroy */
}

/* UTP_GET_READ_BUFFER_SIZE + utp_read_drained, and utp_setsockopt(UTP_RCVBUF)
 * on a live (accepted, inside ON_ACCEPT) socket: B's application holds what it
 * reads, so the window B advertises closes and A stalls; once B consumes and
 * calls utp_read_drained, an ACK reopens the window at once. */
static void test_read_buffer_size(void)
{
    static unsigned char data[200000];
    size_t i, off = 0, stalled;
    int rounds, before;
    reset_counters();
    for (i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 13 + (i >> 11));
    A = utp_init(2);
    B = utp_init(2);
    setup_ctx(A);
    setup_ctx(B);
    utp_set_callback(B, UTP_ON_ACCEPT, &cb_accept);
    utp_set_callback(B, UTP_GET_READ_BUFFER_SIZE, &cb_read_buffer_size);
    rcvbuf_on_accept = 65536;
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1 && accepts == 1 && got_b == 5);
    CHECK(rbs_calls > 0);
    CHECK(last_wnd_b == 65536); /* setsockopt in ON_ACCEPT took effect */
    /* live setsockopt on the connected side too */
    CHECK(utp_setsockopt(sa, UTP_TARGET_DELAY, 50000) == 0);
    CHECK(utp_getsockopt(sa, UTP_TARGET_DELAY) == 50000);
    CHECK(utp_setsockopt(sa, UTP_SNDBUF, 131072) == 0);

    got_b = 0;
    hold_b = 1;
    for (rounds = 0; rounds < 300; rounds++) {
        while (off < sizeof data) {
            ssize_t n = utp_write(sa, data + off, sizeof data - off > 3000 ? 3000 : sizeof data - off);
            if (n <= 0) break;
            off += (size_t)n;
        }
        pump(1);
    }
    stalled = got_b;
    /* about RCVBUF held; the sender's zero-window probes (one packet per RTO
     * while the window stays shut) may add a few packets in 3 s */
    CHECK(stalled > 60000 && stalled <= 65536 + 10 * 1500);
    CHECK(stalled < sizeof data);
    CHECK(last_wnd_b < 1500);                /* window (nearly) closed */
    CHECK(memcmp(rx, data, stalled) == 0);

    /* the application consumes everything: the window reopens at once */
    held_b = 0;
    hold_b = 0;
    before = sends_b;
    utp_read_drained(sb);
    CHECK(sends_b == before + 1);           /* immediate window-update ACK */
    CHECK(last_wnd_b == 65536);
    for (rounds = 0; rounds < 3000 && got_b < sizeof data; rounds++) {
        while (off < sizeof data) {
            ssize_t n = utp_write(sa, data + off, sizeof data - off > 3000 ? 3000 : sizeof data - off);
            if (n <= 0) break;
            off += (size_t)n;
        }
        pump(1);
    }
    CHECK(off == sizeof data);
    CHECK(got_b == sizeof data && memcmp(rx, data, sizeof data) == 0);
    utp_destroy(A);
    utp_destroy(B);
}

/* utp_connect called re-entrantly, from inside UTP_SENDTO while another
 * connection's data packets are still queued for sending: the new socket
 * must get its own connection ids (they were once parsed from the first
 * queued packet, which then belonged to the other connection), so its
 * handshake completes and each connection's bytes reach its own peer. */
static utp_socket *sa2;
static int reenter_armed, reentered;
static unsigned char syn2[20]; /* the second socket's SYN */
static utp_socket *reset_socket; /* the socket ON_ERROR(ECONNRESET) named */
static uint64 cb_error_socket(utp_callback_arguments *a)
{
    if (a->error_code == UTP_ECONNRESET) reset_socket = a->socket;
    return cb_error(a);
}
static int overhead_sa2_sent, overhead_sa2_recv;
static uint64 cb_overhead(utp_callback_arguments *a)
{
    if (a->socket != NULL && a->socket == sa2) {
        if (a->send) overhead_sa2_sent++;
        else overhead_sa2_recv++;
    }
    return 0;
}
static uint64 cb_sendto_reentrant(utp_callback_arguments *a)
{
    if (a->context == A && reentered && a->len >= 20 && a->buf[0] == 0x41 /* ST_SYN v1 */)
        memcpy(syn2, a->buf, 20);
    if (a->context == A && reenter_armed && !reentered) {
        reentered = 1;
        sa2 = utp_create_socket(A);
        CHECK(sa2 != NULL);
        CHECK(utp_connect(sa2, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    }
    return cb_sendto(a);
}

static void test_reentrant_connect(void)
{
    static unsigned char bulk[20000];
    int n_before;
    reset_counters();
    reenter_armed = reentered = 0;
    A = utp_init(2);
    B = utp_init(2);
    setup_ctx(A);
    setup_ctx(B);
    utp_set_callback(A, UTP_SENDTO, &cb_sendto_reentrant);
    utp_set_callback(B, UTP_ON_ACCEPT, &cb_accept);
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1 && accepts == 1 && got_b == 5);
    /* Several data packets go out in one flush; the first SENDTO connects
     * a second socket while the others are still queued. */
    memset(bulk, 'x', sizeof bulk);
    {
        /* grow the window, so that one flush carries several packets */
        int i;
        for (i = 0; i < 20; i++) {
            utp_write(sa, bulk, sizeof bulk);
            pump(2);
        }
    }
    reenter_armed = 1;
    n_before = sends;
    CHECK(utp_write(sa, bulk, sizeof bulk) > 1000);
    CHECK(sends - n_before > 2);
    CHECK(reentered == 1);
    pump(20);
    CHECK(connects == 2);          /* the second handshake completed */
    CHECK(accepts == 2);
    CHECK(errors[UTP_ECONNRESET] == 0 && errors[UTP_ECONNREFUSED] == 0);
    /* Packets of the second connection, both ways, are put down to the
     * second socket: the C layer finds it by the ids it keeps for it. */
    utp_set_callback(A, UTP_ON_OVERHEAD_STATISTICS, &cb_overhead);
    CHECK(utp_write(sa2, (void *)"2", 1) == 1);
    pump(3);
    CHECK(overhead_sa2_sent > 0 && overhead_sa2_recv > 0);
    /* An ICMP error quoting the second socket's SYN is matched, by the ids
     * the C layer keeps for it, to the second socket (not to the first,
     * whose packet was queued first). */
    CHECK(syn2[0] == 0x41);
    utp_set_callback(A, UTP_ON_ERROR, &cb_error_socket);
    reset_socket = NULL;
    CHECK(utp_process_icmp_error(A, syn2, 20, (struct sockaddr *)&addr_b, sizeof addr_b) == 1);
    CHECK(errors[UTP_ECONNRESET] == 1);
    CHECK(reset_socket == sa2);
    utp_close(sa);
    utp_close(sa2);
    pump(100);
    utp_destroy(A);
    utp_destroy(B);
}

/* UTP_ON_DELAY_SAMPLE: one per ACK of new data, for the sending socket,
 * carrying our queuing delay (one-way delay above the base) in ms. */
static int delay_samples, delay_sample_ms, delay_sample_other;
static uint64 cb_delay_sample(utp_callback_arguments *a)
{
    delay_samples++;
    delay_sample_ms = a->sample_ms;
    if (a->socket != sa) delay_sample_other++;
    return 0;
}

static void test_delay_samples(void)
{
    static unsigned char chunk[1000];
    int i;
    reset_counters();
    delay_samples = delay_sample_other = 0;
    delay_sample_ms = -1;
    A = utp_init(2);
    B = utp_init(2);
    setup_ctx(A);
    setup_ctx(B);
    utp_set_callback(B, UTP_ON_ACCEPT, &cb_accept);
    utp_set_callback(A, UTP_ON_DELAY_SAMPLE, &cb_delay_sample);
    utp_set_callback(B, UTP_ON_DELAY_SAMPLE, &cb_delay_sample);
    sa = utp_create_socket(A);
    CHECK(utp_connect(sa, (struct sockaddr *)&addr_b, sizeof addr_b) == 0);
    pump(5);
    CHECK(connects == 1);
    /* the 5 bytes the connect callback wrote were acknowledged at once */
    delay_samples = 0;
    /* 5 ms on the way: the base delay */
    CHECK(utp_write(sa, chunk, sizeof chunk) == (ssize_t)sizeof chunk);
    now_us += 5000;
    pump(3);
    CHECK(accepts == 1 && got_b == 5 + sizeof chunk); /* "hello" came first */
    CHECK(delay_samples >= 1 && delay_sample_ms == 0);
    /* 25 ms on the way, several times (the current delay is the least of
     * the last few samples): 20 ms above the base */
    for (i = 0; i < 4; i++) {
        CHECK(utp_write(sa, chunk, sizeof chunk) == (ssize_t)sizeof chunk);
        now_us += 25000;
        pump(3);
    }
    CHECK(got_b == 5 + 5 * sizeof chunk);
    CHECK(delay_samples >= 5);
    CHECK(delay_sample_ms >= 19 && delay_sample_ms <= 21);
    CHECK(delay_sample_other == 0); /* only the sender measures */
    utp_close(sa);
    pump(100);
    utp_destroy(A);
    utp_destroy(B);
}

int main(void)
{
    memset(&addr_a, 0, sizeof addr_a);
    addr_a.sin_family = AF_INET;
    addr_a.sin_port = htons(1000);
    addr_a.sin_addr.s_addr = htonl(0x0a000001);
    addr_b = addr_a;
    addr_b.sin_port = htons(2000);
    addr_b.sin_addr.s_addr = htonl(0x0a000002);

    test_null_everywhere();
    test_context_misuse();
    test_transfer_and_close();
    test_libutp_close_sequence();
    test_read_buffer_size();
    test_reentrant_connect();
    test_delay_samples();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
