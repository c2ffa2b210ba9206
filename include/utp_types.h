/*
 * utp_types.h -- basic types and platform glue for utp.h.
 *
 * Part of the Rust reimplementation of libutp's C API (crate utp-ffi).
 * This file is maintained by hand: it consists of preprocessor logic and
 * typedefs of C basic types that cbindgen cannot generate. utp.h includes it
 * by a quoted relative include, so install both files side by side.
 * The names and values match libutp's utp_types.h so that existing programs
 * compile unchanged.
 */

#ifndef __UTP_TYPES_H__
#define __UTP_TYPES_H__

/* Structure packing hook; a build may predefine it. Empty unless the
 * toolchain needs the attribute form (BROKEN_GCC_STRUCTURE_PACKING). */
#ifndef PACKED_ATTRIBUTE
#  if defined(BROKEN_GCC_STRUCTURE_PACKING) && defined(__GNUC__)
#    define PACKED_ATTRIBUTE __attribute__((__packed__))
#  else
#    define PACKED_ATTRIBUTE
#  endif
#endif

#ifdef __GNUC__
#  define ALIGNED_ATTRIBUTE(x) __attribute__((aligned(x)))
#else
#  define ALIGNED_ATTRIBUTE(x)
#endif

/* Socket types (struct sockaddr, socklen_t, SHUT_*, ssize_t, inet_ntoa). */
#if defined(WIN32) || defined(_WIN32)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
#  include <winsock2.h>
#  include <ws2tcpip.h>
#  define IP_OPT_DONTFRAG IP_DONTFRAGMENT
#  ifndef SHUT_RD
#    define SHUT_RD SD_RECEIVE
#    define SHUT_WR SD_SEND
#    define SHUT_RDWR SD_BOTH
#  endif
#else
#  include <netinet/in.h>
#  include <arpa/inet.h>
#  include <unistd.h>
#  include <sys/socket.h>
#  if defined(IP_DONTFRAG)
#    define IP_OPT_DONTFRAG IP_DONTFRAG
#  elif defined(IP_DONTFRAGMENT)
#    define IP_OPT_DONTFRAG IP_DONTFRAGMENT
#  endif
#endif

#ifdef _MSC_VER
#  include <BaseTsd.h>
typedef SSIZE_T ssize_t;
#endif

#ifdef POSIX
typedef struct sockaddr_storage SOCKADDR_STORAGE;
#endif

/* printf format for a uint64 */
#if defined(WIN32) || defined(_WIN32)
#  define I64u "%I64u"
#else
#  define I64u "%Lu"
#endif

typedef unsigned char byte;
typedef unsigned char uint8;
typedef signed char int8;
typedef unsigned short uint16;
typedef signed short int16;
typedef unsigned int uint;
typedef unsigned int uint32;
typedef signed int int32;

#ifdef _MSC_VER
typedef unsigned __int64 uint64;
typedef signed __int64 int64;
#else
typedef unsigned long long uint64;
typedef long long int64;
#endif

/* Compile-time assertion: a negative array size breaks the build. */
#ifndef CASSERT
#  define CASSERT(exp, name) typedef int is_not_##name[(exp) ? 1 : -1];
#endif

CASSERT(sizeof(uint64) == 8, sizeof_uint64_is_8)
CASSERT(sizeof(int64) == 8, sizeof_int64_is_8)

#ifndef INT64_MAX
#  define INT64_MAX 0x7fffffffffffffffLL
#endif

typedef const char *cstr;
typedef char *str;

/* libutp's one-byte bool for C. Skipped when <stdbool.h> already defined
 * `bool` (a macro) and in C23, where bool is a keyword; C++ has its own. */
#if !defined(__cplusplus) && !defined(bool) && \
    !(defined(__STDC_VERSION__) && __STDC_VERSION__ >= 202311L)
typedef uint8 bool;
#endif

#endif /* __UTP_TYPES_H__ */
