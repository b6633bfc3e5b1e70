/*
 * ns per lookup from C through feature handles and the batch call, next to lookups by key and the
 * machine's one-miss latency measured in the same run. The same rows as
 * ffi/examples/bench_handles.rs (see there); ffi/bench/run_handles.sh runs both in turns.
 *
 * Usage: [HUGE_WAIT=SECONDS] bench_handles SNAPSHOT IDS_FILE
 * With HUGE_WAIT, waits (up to that long) before the rows until the process's AnonHugePages total
 * stops growing: the huge pages of a large snapshot come from the kernel's background thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "entitle.h"

#define CALLS 2000000L
#define STREAM (1L << 20)
#define BATCH 64
#define LINES ((32L << 20) / 64)

/* Thread CPU time, not wall time: on a machine shared with other work, time spent descheduled
 * would otherwise count as lookup time (cache pollution by the other work still counts). */
static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t next_random(uint64_t *s) { /* xorshift64*, as the Rust side */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static volatile size_t sink;

/* The sum of the AnonHugePages lines of /proc/self/smaps, in kB (0 where there is none). */
static long anon_huge_kb(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[256];
    long sum = 0, v;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld", &v) == 1) sum += v;
    fclose(f);
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SNAPSHOT IDS_FILE\n", argv[0]);
        return 2;
    }
    entitle_engine *engine = NULL;
    entitle_result r = entitle_engine_from_file((const uint8_t *)argv[1], strlen(argv[1]), &engine);
    if (r != ENTITLE_RESULT_OK) {
        fprintf(stderr, "load %s: %s\n", argv[1], entitle_result_message(r));
        return 1;
    }
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
    const char **starts = malloc(cap * sizeof *starts);
    size_t *lens = malloc(cap * sizeof *lens);
    for (char *p = text, *end = text + size; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) nl = end;
        if (nl > p) {
            if (count == cap) {
                cap *= 2;
                starts = realloc(starts, cap * sizeof *starts);
                lens = realloc(lens, cap * sizeof *lens);
            }
            starts[count] = p;
            lens[count] = (size_t)(nl - p);
            count++;
        }
        p = nl + 1;
    }
    if (count == 0) {
        fprintf(stderr, "no ids in %s\n", argv[2]);
        return 1;
    }
    /* The random stream packed end to end, as the Rust side holds it. */
    uint8_t *bytes = malloc((size_t)STREAM * 64);
    size_t *ends = malloc((size_t)STREAM * sizeof *ends);
    size_t at_byte = 0;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (long i = 0; i < STREAM; i++) {
        size_t k = next_random(&seed) % count;
        memcpy(bytes + at_byte, starts[k], lens[k]);
        at_byte += lens[k];
        ends[i] = at_byte;
    }
    char (*unknown)[32] = malloc((size_t)STREAM * sizeof *unknown);
    for (long i = 0; i < STREAM; i++) snprintf(unknown[i], sizeof unknown[i], "cus_nobody%08ld", i);
    long wait = getenv("HUGE_WAIT") ? atol(getenv("HUGE_WAIT")) : 0;
    long huge_kb = anon_huge_kb();
    /* The kernel merges pages in steps about 10 s apart: stop once 15 s pass without growth. */
    for (long waited = 0, still = 0; waited < wait && still < 3; waited += 5) {
        struct timespec five = {5, 0};
        nanosleep(&five, NULL);
        long now = anon_huge_kb();
        still = (now == huge_kb && now > 0) ? still + 1 : 0;
        huge_kb = now;
    }
    size_t *chase = calloc((size_t)LINES * 8, sizeof *chase);
    size_t *order = malloc((size_t)LINES * sizeof *order);
    for (long i = 0; i < LINES; i++) order[i] = (size_t)i;
    uint64_t s2 = 0x12345678ULL;
    for (long i = LINES - 1; i > 0; i--) {
        size_t j = next_random(&s2) % (uint64_t)(i + 1);
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (long w = 0; w < LINES; w++) chase[order[w] * 8] = order[(w + 1) % LINES] * 8;
    free(order);

    entitle_feature sso;
    if (entitle_engine_feature(engine, (const uint8_t *)"sso", 3, &sso) != ENTITLE_RESULT_OK) {
        return 1;
    }
    const uint8_t *hot = (const uint8_t *)starts[0];
    size_t hot_len = lens[0];
    size_t acc = 0;

    size_t at = 0;
    double t = now_ns();
    for (long i = 0; i < CALLS; i++) at = chase[at];
    double floor = (now_ns() - t) / CALLS;
    acc += at;

    t = now_ns();
    for (long i = 0; i < CALLS; i++) acc += entitle_engine_enabled(engine, hot, hot_len, (const uint8_t *)"sso", 3);
    double hot_key = (now_ns() - t) / CALLS;
    t = now_ns();
    for (long i = 0; i < CALLS; i++) acc += entitle_engine_feature_enabled(engine, sso, hot, hot_len);
    double hot_handle = (now_ns() - t) / CALLS;
    t = now_ns();
    for (long i = 0; i < CALLS; i++) {
        long k = i & (STREAM - 1);
        size_t s = k == 0 ? 0 : ends[k - 1];
        acc += entitle_engine_enabled(engine, bytes + s, ends[k] - s, (const uint8_t *)"sso", 3);
    }
    double random_key = (now_ns() - t) / CALLS;
    t = now_ns();
    for (long i = 0; i < CALLS; i++) {
        long k = i & (STREAM - 1);
        size_t s = k == 0 ? 0 : ends[k - 1];
        acc += entitle_engine_feature_enabled(engine, sso, bytes + s, ends[k] - s);
    }
    double random_handle = (now_ns() - t) / CALLS;
    entitle_decision out[BATCH];
    size_t local[BATCH];
    t = now_ns();
    long done = 0;
    while (done < CALLS) {
        long first = done & (STREAM - 1);
        size_t s = first == 0 ? 0 : ends[first - 1];
        for (int j = 0; j < BATCH; j++) local[j] = ends[first + j] - s;
        if (entitle_engine_check_customers(engine, sso, bytes + s, local[BATCH - 1], local, BATCH,
                                           out) != ENTITLE_RESULT_OK) {
            return 1;
        }
        for (int j = 0; j < BATCH; j++) acc += out[j].enabled;
        done += BATCH;
    }
    double random_batch = (now_ns() - t) / (double)done;
    t = now_ns();
    for (long i = 0; i < CALLS; i++) {
        const char *u = unknown[i & (STREAM - 1)];
        acc += entitle_engine_feature_enabled(engine, sso, (const uint8_t *)u, 18);
    }
    double unknown_handle = (now_ns() - t) / CALLS;
    sink = acc;

    printf("c floor_dependent_load=%.2f hot_key=%.2f hot_handle=%.2f random_key=%.2f "
           "random_handle=%.2f random_batch=%.2f unknown_handle=%.2f customers=%zu anon_huge_kb=%ld\n",
           floor, hot_key, hot_handle, random_key, random_handle, random_batch, unknown_handle,
           count, huge_kb);
    free(text);
    free(starts);
    free(lens);
    free(bytes);
    free(ends);
    free(unknown);
    free(chase);
    entitle_engine_free(engine);
    return 0;
}
