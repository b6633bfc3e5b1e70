/* Shared helpers of the C tests: counted checks and a closing summary line. */
#ifndef ENTITLE_TEST_CHECK_H
#define ENTITLE_TEST_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "entitle.h"

static atomic_long checks_passed;
static atomic_long checks_failed;

/* Counts one check; on failure prints where and the formatted explanation. */
#define CHECKF(cond, ...)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            atomic_fetch_add(&checks_passed, 1);                                           \
        } else {                                                                           \
            atomic_fetch_add(&checks_failed, 1);                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

#define CHECK(cond) CHECKF(cond, "%s", "")

/* Checks that an entitle call returned `want`, naming both codes on failure. */
#define CHECK_RESULT(call, want)                                                           \
    do {                                                                                   \
        entitle_result got_ = (call);                                                      \
        CHECKF(got_ == (want), "got %u (%s), want %u (%s); detail: %s", (unsigned)got_,    \
               entitle_result_message(got_), (unsigned)(want), entitle_result_message(want), \
               last_error());                                                              \
    } while (0)

/* A string literal or C string as the (ptr, len) pair the ABI takes. */
#define STR(s) (const uint8_t *)(s), strlen(s)

/* This thread's last error detail, NUL-terminated (static per thread; valid until the next call). */
static inline const char *last_error(void) {
    static _Thread_local char buf[4096];
    size_t n = 0;
    size_t need = entitle_last_error_len();
    if (need >= sizeof buf || entitle_last_error_message((uint8_t *)buf, sizeof buf - 1, &n) !=
                                  ENTITLE_RESULT_OK) {
        snprintf(buf, sizeof buf, "(detail unavailable, %zu bytes)", need);
        return buf;
    }
    buf[n] = '\0';
    return buf;
}

/* Field-wise equality (memcmp would also compare the struct's padding bytes). */
static inline bool same_decision(const entitle_decision *a, const entitle_decision *b) {
    return a->value == b->value && a->version == b->version && a->reason == b->reason &&
           a->feature_type == b->feature_type && a->enabled == b->enabled &&
           a->unlimited == b->unlimited;
}

/* Prints the closing summary line and returns the exit status. */
static inline int report(const char *name) {
    long passed = atomic_load(&checks_passed);
    long failed = atomic_load(&checks_failed);
    printf("%s: %ld passed, %ld failed\n", name, passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

#endif
