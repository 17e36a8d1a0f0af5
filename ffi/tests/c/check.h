/* What every C test here shares: CHECK counts passes and failures (naming the failed line),
 * S(lit) passes a string literal as (pointer, length), and finish() prints the summary line
 * the Rust harness reads ("N passed, M failed") and gives main's exit status. */
#ifndef AMBIT_TEST_CHECK_H
#define AMBIT_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

#define S(lit) (const uint8_t *)(lit), strlen(lit)

static inline int finish(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
