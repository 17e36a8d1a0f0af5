/* What every C test here shares: CHECK counts passes and failures (naming the failed line),
 * S(s) passes a string literal or any NUL-terminated string as an ambit_str, SN(p, n) passes
 * the n bytes at p as one, str_eq compares one with text, addr_of/addr_text convert addresses
 * from and to "ip:port", and finish() prints the summary line the Rust harness reads ("N
 * passed, M failed") and gives main's exit status. */
#ifndef AMBIT_TEST_CHECK_H
#define AMBIT_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ambit.h"

static int passed, failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                             \
    } while (0)

/* `n` bytes at `p` (NULL allowed, to test how ambit refuses NULL with a nonzero length). */
#define SN(p, n) ((ambit_str){(const uint8_t *)(p), (size_t)(n)})
/* A NUL-terminated string (evaluated twice: pass a literal or a variable). */
#define S(s) SN((s), strlen(s))

/* Whether `s` holds exactly the text `want`. */
static inline int str_eq(ambit_str s, const char *want) {
    return s.len == strlen(want) && (s.len == 0 || memcmp(s.data, want, s.len) == 0);
}

/* Parses "ip:port" ("[v6]:port"); a failure counts as a failed check (the addresses in these
 * tests are constants) and gives family 0, which every call refuses. */
static inline ambit_socket_addr addr_of(const char *text) {
    ambit_socket_addr a;
    memset(&a, 0, sizeof a);
    if (ambit_socket_addr_parse(S(text), &a) != AMBIT_RESULT_OK) {
        fprintf(stderr, "not an address: %s\n", text);
        failed++;
    }
    return a;
}

/* Formats `a` as "ip:port" into `buf` (NUL-terminated; empty when it cannot be). */
static inline const char *addr_text(const ambit_socket_addr *a, char *buf, size_t cap) {
    size_t n = 0;
    if (cap == 0) return buf;
    if (ambit_socket_addr_format(a, (uint8_t *)buf, cap - 1, &n) != AMBIT_RESULT_OK) n = 0;
    buf[n] = 0;
    return buf;
}

static inline int finish(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
