/*
 * ns per entitle_engine_enabled call from C: one hot customer, and random customers of a large
 * snapshot. Run by ffi/bench/run.sh, which prints these numbers next to the same loop in Rust
 * (ffi/examples/bench_enabled.rs).
 *
 * Usage: bench_enabled SNAPSHOT IDS_FILE [RUNS]
 * IDS_FILE holds one customer id per line. Each measurement is the median of RUNS runs.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "entitle.h"

#define CALLS 4000000L
#define STREAM (1L << 20) /* random customer indices, drawn before timing */

typedef struct {
    const uint8_t *ptr;
    size_t len;
} id;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t next_random(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static volatile size_t sink;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SNAPSHOT IDS_FILE [RUNS]\n", argv[0]);
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 7;
    if (runs < 1 || runs > 100) runs = 7;

    entitle_engine *engine = NULL;
    entitle_result r = entitle_engine_from_file((const uint8_t *)argv[1], strlen(argv[1]), &engine);
    if (r != ENTITLE_RESULT_OK) {
        fprintf(stderr, "load %s: %s\n", argv[1], entitle_result_message(r));
        return 1;
    }

    /* All ids in one buffer, as the Rust side holds them (one allocation, file order). */
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    size_t count = 0, cap = 1 << 20;
    id *ids = malloc(cap * sizeof *ids);
    for (char *p = text, *end = text + size; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) nl = end;
        if (nl > p) {
            if (count == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
            ids[count].ptr = (const uint8_t *)p;
            ids[count].len = (size_t)(nl - p);
            count++;
        }
        p = nl + 1;
    }
    if (count == 0) {
        fprintf(stderr, "no ids in %s\n", argv[2]);
        return 1;
    }

    id *stream = malloc(STREAM * sizeof *stream);
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (long i = 0; i < STREAM; i++) stream[i] = ids[next_random(&seed) % count];

    const uint8_t *feature = (const uint8_t *)"sso";
    const size_t feature_len = 3;
    double hot[100], random[100];
    for (int run = 0; run < runs; run++) {
        size_t enabled = 0;
        id h = ids[0];
        double t0 = now_ns();
        for (long i = 0; i < CALLS; i++) {
            enabled += entitle_engine_enabled(engine, h.ptr, h.len, feature, feature_len);
        }
        double t1 = now_ns();
        for (long i = 0; i < CALLS; i++) {
            id c = stream[i & (STREAM - 1)];
            enabled += entitle_engine_enabled(engine, c.ptr, c.len, feature, feature_len);
        }
        double t2 = now_ns();
        sink = enabled;
        hot[run] = (t1 - t0) / CALLS;
        random[run] = (t2 - t1) / CALLS;
    }
    double hot_median = median(hot, runs), random_median = median(random, runs);
    /* median() sorted the samples: [0] is the best run. */
    printf("c hot_ns=%.2f random_ns=%.2f hot_best_ns=%.2f random_best_ns=%.2f customers=%zu "
           "runs=%d calls=%ld\n",
           hot_median, random_median, hot[0], random[0], count, runs, CALLS);

    free(text);
    free(ids);
    free(stream);
    entitle_engine_free(engine);
    return 0;
}
