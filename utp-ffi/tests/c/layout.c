/*
 * Layout and constant check of include/utp.h against libutp's ABI (LP64 and
 * ILP32 values from libutp-api-contract.md section 3). Compiled as C and as
 * C++ with -Wall -Werror by scripts/test-ffi.sh, then run (it also checks the
 * exported name tables at run time).
 */
#ifdef WITH_STDBOOL
#include <stdbool.h> /* must not collide with utp_types.h's bool */
#endif
#include "utp.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
#define SA(e) static_assert(e, #e)
#else
#define SA(e) _Static_assert(e, #e)
#endif

#define P sizeof(void *)

/* utp_callback_arguments */
SA(offsetof(utp_callback_arguments, context) == 0);
SA(offsetof(utp_callback_arguments, socket) == P);
SA(offsetof(utp_callback_arguments, len) == 2 * P);
SA(offsetof(utp_callback_arguments, flags) == 3 * P);
SA(offsetof(utp_callback_arguments, callback_type) == 3 * P + 4);
SA(offsetof(utp_callback_arguments, buf) == 3 * P + 8);
SA(offsetof(utp_callback_arguments, address) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, send) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, sample_ms) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, error_code) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, state) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, u1) == 4 * P + 8);
SA(offsetof(utp_callback_arguments, address_len) == 5 * P + 8);
SA(offsetof(utp_callback_arguments, type) == 5 * P + 8);
SA(offsetof(utp_callback_arguments, u2) == 5 * P + 8);
#if defined(__LP64__) || defined(_WIN64)
SA(sizeof(utp_callback_arguments) == 56);
SA(offsetof(utp_callback_arguments, address) == 40);
SA(offsetof(utp_callback_arguments, type) == 48);
SA(sizeof(struct utp_iovec) == 16);
#else
SA(sizeof(utp_callback_arguments) == 32);
#endif

/* statistics */
SA(sizeof(utp_context_stats) == 40);
SA(offsetof(utp_context_stats, _nraw_send) == 20);
SA(sizeof(utp_socket_stats) == 40);
SA(offsetof(utp_socket_stats, nbytes_xmit) == 8);
SA(offsetof(utp_socket_stats, rexmit) == 16);
SA(offsetof(utp_socket_stats, fastrexmit) == 20);
SA(offsetof(utp_socket_stats, nxmit) == 24);
SA(offsetof(utp_socket_stats, nrecv) == 28);
SA(offsetof(utp_socket_stats, nduprecv) == 32);
SA(offsetof(utp_socket_stats, mtu_guess) == 36);
SA(offsetof(struct utp_iovec, iov_len) == P);

/* basic types of utp_types.h */
SA(sizeof(byte) == 1 && sizeof(uint8) == 1 && sizeof(int8) == 1);
SA(sizeof(uint16) == 2 && sizeof(int16) == 2);
SA(sizeof(uint) == 4 && sizeof(uint32) == 4 && sizeof(int32) == 4);
SA(sizeof(uint64) == 8 && sizeof(int64) == 8);
SA(sizeof(bool) == 1);

/* name tables: data objects of N pointers (copy relocations need the size) */
SA(sizeof(utp_state_names) == 5 * P);
SA(sizeof(utp_error_code_names) == 3 * P);
SA(sizeof(utp_callback_names) == 16 * P);

/* constants */
SA(UTP_UDP_DONTFRAG == 2);
SA(UTP_STATE_CONNECT == 1 && UTP_STATE_WRITABLE == 2 && UTP_STATE_EOF == 3 && UTP_STATE_DESTROYING == 4);
SA(UTP_ECONNREFUSED == 0 && UTP_ECONNRESET == 1 && UTP_ETIMEDOUT == 2);
SA(UTP_ON_FIREWALL == 0 && UTP_ON_ACCEPT == 1 && UTP_ON_CONNECT == 2 && UTP_ON_ERROR == 3);
SA(UTP_ON_READ == 4 && UTP_ON_OVERHEAD_STATISTICS == 5 && UTP_ON_STATE_CHANGE == 6);
SA(UTP_GET_READ_BUFFER_SIZE == 7 && UTP_ON_DELAY_SAMPLE == 8 && UTP_GET_UDP_MTU == 9);
SA(UTP_GET_UDP_OVERHEAD == 10 && UTP_GET_MILLISECONDS == 11 && UTP_GET_MICROSECONDS == 12);
SA(UTP_GET_RANDOM == 13 && UTP_LOG == 14 && UTP_SENDTO == 15);
SA(UTP_LOG_NORMAL == 16 && UTP_LOG_MTU == 17 && UTP_LOG_DEBUG == 18);
SA(UTP_SNDBUF == 19 && UTP_RCVBUF == 20 && UTP_TARGET_DELAY == 21 && UTP_ARRAY_SIZE == 22);
SA(UTP_IOV_MAX == 1024);

/* the callback type is a function type: a function converts to utp_callback_t * */
static uint64 cb(utp_callback_arguments *a) { return a ? 0 : 1; }
static utp_callback_t *const cb_ptr = &cb;

/* the struct tags are part of the API */
static struct UTPSocket *tag_socket;
static struct struct_utp_context *tag_context;

int main(void)
{
    static const char *const cbn[16] = {
        "UTP_ON_FIREWALL", "UTP_ON_ACCEPT", "UTP_ON_CONNECT", "UTP_ON_ERROR",
        "UTP_ON_READ", "UTP_ON_OVERHEAD_STATISTICS", "UTP_ON_STATE_CHANGE",
        "UTP_GET_READ_BUFFER_SIZE", "UTP_ON_DELAY_SAMPLE", "UTP_GET_UDP_MTU",
        "UTP_GET_UDP_OVERHEAD", "UTP_GET_MILLISECONDS", "UTP_GET_MICROSECONDS",
        "UTP_GET_RANDOM", "UTP_LOG", "UTP_SENDTO"};
    int i, bad = 0;
    utp_callback_arguments a;
    memset(&a, 0, sizeof a);
    a.u1.state = 3; /* named-union spelling aliases the anonymous one */
    if (a.state != 3) bad++;
    a.u2.type = 7;
    if (a.type != 7) bad++;
    if (cb_ptr(&a) != 0) bad++;
    (void)tag_socket;
    (void)tag_context;

    if (utp_state_names[0] != NULL) bad++;
    if (strcmp(utp_state_names[UTP_STATE_CONNECT], "UTP_STATE_CONNECT") != 0) bad++;
    if (strcmp(utp_state_names[UTP_STATE_WRITABLE], "UTP_STATE_WRITABLE") != 0) bad++;
    if (strcmp(utp_state_names[UTP_STATE_EOF], "UTP_STATE_EOF") != 0) bad++;
    if (strcmp(utp_state_names[UTP_STATE_DESTROYING], "UTP_STATE_DESTROYING") != 0) bad++;
    if (strcmp(utp_error_code_names[UTP_ECONNREFUSED], "UTP_ECONNREFUSED") != 0) bad++;
    if (strcmp(utp_error_code_names[UTP_ECONNRESET], "UTP_ECONNRESET") != 0) bad++;
    if (strcmp(utp_error_code_names[UTP_ETIMEDOUT], "UTP_ETIMEDOUT") != 0) bad++;
    for (i = 0; i < 16; i++)
        if (strcmp(utp_callback_names[i], cbn[i]) != 0) bad++;

    printf("layout: %s (%d mismatches)\n", bad ? "FAIL" : "ok", bad);
    return bad != 0;
}
