/*
 * Engines that sync from an edge, through the C ABI: connect (and its misuse), an unreachable edge,
 * a live local edge serving v1 then v2, status and its texts, fork + entitle_engine_after_fork,
 * close, a warm start from the cache directory, and engine events (entitle_engine_next_event).
 *
 * Usage: test_sync FIXTURE_DIR EDGE_URL PUBLISH_COMMAND CACHE_DIR
 *   FIXTURE_DIR      as for test_ffi (v1.snap)
 *   EDGE_URL         an `entitle serve` of an edge directory holding v1.json published as version 1
 *   PUBLISH_COMMAND  a shell command that publishes v2.json to that edge directory
 *   CACHE_DIR        an empty directory for the engine's cache
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "json.h"

#define AT 1700000000

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static entitle_status status_of(const entitle_engine *e) {
    entitle_status s;
    memset(&s, 0, sizeof s);
    CHECK_RESULT(entitle_engine_status(e, &s), ENTITLE_RESULT_OK);
    return s;
}

/* The status text `which` as a NUL-terminated string in buf. */
static const char *status_text(const entitle_engine *e, entitle_status_text which, char *buf,
                               size_t cap) {
    size_t n = 0;
    entitle_result r = entitle_engine_status_text(e, which, (uint8_t *)buf, cap - 1, &n);
    CHECKF(r == ENTITLE_RESULT_OK, "status_text(%u): %s", which, entitle_result_message(r));
    buf[r == ENTITLE_RESULT_OK ? n : 0] = '\0';
    return buf;
}

static entitle_sync_config config_for(const char *url) {
    entitle_sync_config c;
    memset(&c, 0, sizeof c);
    c.url = (const uint8_t *)url;
    c.url_len = strlen(url);
    return c;
}

static void test_config_misuse(void) {
    entitle_engine *sentinel = (entitle_engine *)(uintptr_t)0x1;
    entitle_engine *e = sentinel;
    entitle_sync_config c = config_for("http://127.0.0.1:9");
    CHECK_RESULT(entitle_engine_connect(NULL, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_connect(&c, NULL), ENTITLE_RESULT_NULL_PARAMETER);

    c = config_for("ftp://127.0.0.1:9");
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_CONFIG);
    CHECK(strstr(last_error(), "http") != NULL);
    c = config_for("");
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_CONFIG);
    c.url = NULL; /* NULL with length 0: the empty URL */
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_CONFIG);
    c.url_len = 4;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_NULL_PARAMETER);
    c = config_for("http://127.0.0.1:9/\xff");
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_UTF8);
    CHECK(strstr(last_error(), "config.url") != NULL);
    c = config_for("http://127.0.0.1:9");
    c.url_len = SIZE_MAX;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_PARAMETER);

    c = config_for("http://127.0.0.1:9");
    c.token = (const uint8_t *)"line\nbreak";
    c.token_len = 10;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_CONFIG);
    c.token = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(strstr(last_error(), "config.token") != NULL);
    c.token = (const uint8_t *)"\xc3";
    c.token_len = 1;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_INVALID_UTF8);
    c = config_for("http://127.0.0.1:9");
    c.cache_dir = NULL;
    c.cache_dir_len = 2;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(e == sentinel);
}

static void test_plain_engine(const char *fixture_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_from_file(STR(path), &e), ENTITLE_RESULT_OK);
    entitle_status s = status_of(e);
    CHECK(s.state == ENTITLE_SYNC_STATE_READY && !s.syncing && s.version == 1);
    CHECK(s.syncs == 0 && s.failures == 0 && !s.has_last_success && s.last_error_len == 0);
    CHECK(entitle_engine_wait_ready(e, 0));
    char buf[256];
    CHECK(strcmp(status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR, buf, sizeof buf), "") == 0);
    entitle_engine_close(e); /* no sync thread: only its events close */
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);

    /* Misuse. */
    entitle_status untouched;
    memset(&untouched, 0x77, sizeof untouched);
    entitle_status out = untouched;
    CHECK_RESULT(entitle_engine_status(NULL, &out), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_status(e, NULL), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(memcmp(&out, &untouched, sizeof out) == 0);
    size_t n = 42;
    CHECK_RESULT(entitle_engine_status_text(NULL, 0, (uint8_t *)buf, sizeof buf, &n),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_status_text(e, 0, (uint8_t *)buf, sizeof buf, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_status_text(e, 0, NULL, 5, &n), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_status_text(e, 3, (uint8_t *)buf, sizeof buf, &n),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK(n == 42);
    CHECK_RESULT(entitle_engine_status_text(e, ENTITLE_STATUS_TEXT_LINEAGE, NULL, 0, &n),
                 ENTITLE_RESULT_OK);
    CHECK(n == 0);
    CHECK(!entitle_engine_wait_ready(NULL, 10));
    entitle_engine_close(NULL);
    entitle_engine_after_fork(NULL);
    entitle_engine_free(e);

    CHECK(strcmp(entitle_sync_state_name(ENTITLE_SYNC_STATE_STARTING), "starting") == 0);
    CHECK(strcmp(entitle_sync_state_name(ENTITLE_SYNC_STATE_READY), "ready") == 0);
    CHECK(strcmp(entitle_sync_state_name(ENTITLE_SYNC_STATE_STALE), "stale") == 0);
    CHECK(strcmp(entitle_sync_state_name(ENTITLE_SYNC_STATE_FAILED), "failed") == 0);
    CHECK(strcmp(entitle_sync_state_name(4), "unknown") == 0);
}

/* The next event after `after` within `timeout_ms`, with its message NUL-terminated in msg. */
static entitle_result next_event(const entitle_engine *e, uint64_t after, uint64_t timeout_ms,
                                 entitle_event *ev, char *msg, size_t cap) {
    size_t n = 0;
    entitle_result r = entitle_engine_next_event(e, after, timeout_ms, ev, (uint8_t *)msg, cap - 1,
                                                 &n);
    msg[r == ENTITLE_RESULT_OK ? n : 0] = '\0';
    return r;
}

/* Reads events after `*after` until one of `kind` (returned in *ev) or `seconds` pass. */
static bool wait_event(const entitle_engine *e, uint64_t *after, uint32_t kind, double seconds,
                       entitle_event *ev, char *msg, size_t cap) {
    double deadline = now_seconds() + seconds;
    while (now_seconds() < deadline) {
        entitle_result r = next_event(e, *after, 100, ev, msg, cap);
        if (r == ENTITLE_RESULT_OK) {
            *after = ev->seq;
            if (ev->kind == kind) return true;
        } else if (r != ENTITLE_RESULT_TIMEOUT) {
            return false;
        }
    }
    return false;
}

struct waiter {
    const entitle_engine *engine;
    uint64_t after;
    entitle_result result;
};

static void *wait_forever(void *arg) {
    struct waiter *w = arg;
    entitle_event ev;
    char msg[64];
    w->result = next_event(w->engine, w->after, UINT64_MAX, &ev, msg, sizeof msg);
    return NULL;
}

static void test_events(const char *fixture_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_from_file(STR(path), &e), ENTITLE_RESULT_OK);
    if (e == NULL) return;
    entitle_event untouched;
    memset(&untouched, 0x55, sizeof untouched);
    entitle_event ev = untouched;
    char msg[256];

    /* Nothing yet: TIMEOUT, nothing written. Misuse. */
    CHECK_RESULT(next_event(e, 0, 0, &ev, msg, sizeof msg), ENTITLE_RESULT_TIMEOUT);
    double t0 = now_seconds();
    CHECK_RESULT(next_event(e, 0, 100, &ev, msg, sizeof msg), ENTITLE_RESULT_TIMEOUT);
    CHECKF(now_seconds() - t0 >= 0.09, "waited %.3f s", now_seconds() - t0);
    CHECK(memcmp(&ev, &untouched, sizeof ev) == 0);
    size_t n = 7;
    CHECK_RESULT(entitle_engine_next_event(NULL, 0, 0, &ev, NULL, 0, &n),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_next_event(e, 0, 0, NULL, NULL, 0, &n),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_next_event(e, 0, 0, &ev, NULL, 5, &n),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(n == 7);

    /* A replacement by the application: VERSION_CHANGED 1 -> 2. */
    snprintf(path, sizeof path, "%s/v2.snap", fixture_dir);
    CHECK_RESULT(entitle_engine_replace_file(e, STR(path)), ENTITLE_RESULT_OK);
    CHECK_RESULT(next_event(e, 0, 1000, &ev, msg, sizeof msg), ENTITLE_RESULT_OK);
    CHECK(ev.seq == 1 && ev.kind == ENTITLE_EVENT_VERSION_CHANGED);
    CHECK(ev.old_version == 1 && ev.new_version == 2);
    CHECK(ev.at_ms > 1600000000000LL);
    CHECKF(strstr(msg, "2") != NULL, "message: %s", msg);
    /* The message truncated to the buffer, or not copied at all; the event is the same. */
    entitle_event again;
    CHECK_RESULT(entitle_engine_next_event(e, 0, 0, &again, (uint8_t *)msg, 3, &n),
                 ENTITLE_RESULT_OK);
    CHECK(n == 3 && again.seq == 1 && again.new_version == 2);
    CHECK_RESULT(entitle_engine_next_event(e, 0, 0, &again, NULL, 0, NULL), ENTITLE_RESULT_OK);
    CHECK(again.seq == 1);
    CHECK_RESULT(next_event(e, 1, 0, &ev, msg, sizeof msg), ENTITLE_RESULT_TIMEOUT);

    /* A delta applied by the application: VERSION_CHANGED too. */
    entitle_engine *d = NULL;
    snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
    CHECK_RESULT(entitle_engine_from_file(STR(path), &d), ENTITLE_RESULT_OK);
    snprintf(path, sizeof path, "%s/v1-v2.delta", fixture_dir);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f != NULL && d != NULL) {
        static uint8_t delta[1 << 20];
        size_t len = fread(delta, 1, sizeof delta, f);
        uint64_t version = 0;
        CHECK_RESULT(entitle_engine_apply_delta(d, delta, len, &version), ENTITLE_RESULT_OK);
        CHECK_RESULT(next_event(d, 0, 0, &ev, msg, sizeof msg), ENTITLE_RESULT_OK);
        CHECK(ev.kind == ENTITLE_EVENT_VERSION_CHANGED && ev.old_version == 1 &&
              ev.new_version == 2);
    }
    if (f != NULL) fclose(f);
    entitle_engine_free(d);

    /* close() wakes every waiter, which then gets CLOSED; events before it are still given. */
    struct waiter w[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (struct waiter){e, 1, ENTITLE_RESULT_OK};
        CHECK(pthread_create(&threads[i], NULL, wait_forever, &w[i]) == 0);
    }
    sleep_ms(100);
    t0 = now_seconds();
    entitle_engine_close(e);
    for (int i = 0; i < 3; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK_RESULT(w[i].result, ENTITLE_RESULT_CLOSED);
    }
    CHECKF(now_seconds() - t0 < 5, "waiters woke after %.1f s", now_seconds() - t0);
    CHECK_RESULT(next_event(e, 0, 0, &ev, msg, sizeof msg), ENTITLE_RESULT_OK);
    CHECK(ev.seq == 1);
    CHECK_RESULT(next_event(e, 1, UINT64_MAX, &ev, msg, sizeof msg), ENTITLE_RESULT_CLOSED);
    CHECK(strstr(last_error(), "closed") != NULL);
    CHECK(strcmp(entitle_result_message(ENTITLE_RESULT_TIMEOUT), "the wait timed out") == 0);
    CHECK(strcmp(entitle_result_message(ENTITLE_RESULT_CLOSED), "the engine is closed") == 0);
    entitle_engine_free(e);
}

/* A loopback port that refuses connections: bound, never listening, held for the test. */
static int refusing_port(int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "cannot reserve a loopback port\n");
        exit(2);
    }
    *fd_out = fd;
    return ntohs(addr.sin_port);
}

static void test_unreachable_edge(void) {
    int fd;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", refusing_port(&fd));
    entitle_sync_config c = config_for(url);
    c.poll_interval_ms = 50;
    c.max_backoff_ms = 100;
    c.connect_timeout_ms = 500;
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_OK);
    if (e == NULL) return;

    entitle_status s = status_of(e);
    CHECK(s.syncing);
    CHECKF(s.state == ENTITLE_SYNC_STATE_STARTING || s.state == ENTITLE_SYNC_STATE_FAILED,
           "state %s", entitle_sync_state_name(s.state));
    CHECK(!entitle_engine_wait_ready(e, 200));

    /* Wait for a failed round to be recorded. */
    double deadline = now_seconds() + 20;
    while ((s = status_of(e)).failures == 0 && now_seconds() < deadline) sleep_ms(20);
    CHECKF(s.failures >= 1, "no failure recorded after 20 s");
    CHECK(s.state == ENTITLE_SYNC_STATE_FAILED);
    CHECK(s.syncs == 0 && !s.has_last_success && s.has_last_error_at && s.last_error_len > 0);
    char buf[1024];
    const char *err = status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR, buf, sizeof buf);
    CHECKF(strstr(err, url + 7) != NULL, "last error: %s", err);
    if (s.last_error_len > 1) {
        size_t n = 5;
        CHECK_RESULT(entitle_engine_status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR, (uint8_t *)buf,
                                                1, &n),
                     ENTITLE_RESULT_BUFFER_TOO_SMALL);
        CHECK(n == 5);
    }

    /* Each failed round is an event, with the error as its message. */
    entitle_event ev;
    uint64_t after = 0;
    CHECK(wait_event(e, &after, ENTITLE_EVENT_SYNC_FAILED, 20, &ev, buf, sizeof buf));
    CHECKF(strstr(buf, url + 7) != NULL, "event message: %s", buf);
    CHECK(ev.old_version == 0 && ev.new_version == 0);

    /* No content: every feature is unknown; nothing crashes. */
    entitle_decision d;
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_pro"), STR("projects"), AT, &d),
                 ENTITLE_RESULT_OK);
    CHECK(d.reason == ENTITLE_REASON_FEATURE_NOT_FOUND && d.version == 0);
    CHECK(!entitle_engine_enabled(e, STR("cus_pro"), STR("sso")));

    /* Close stops the thread; a closed engine without content is never ready. */
    double t0 = now_seconds();
    entitle_engine_close(e);
    CHECK(!entitle_engine_wait_ready(e, 5000));
    CHECKF(now_seconds() - t0 < 4, "close + wait_ready took %.1f s", now_seconds() - t0);
    long failures = (long)status_of(e).failures;
    sleep_ms(300);
    CHECKF((long)status_of(e).failures == failures, "rounds continued after close");
    entitle_engine_close(e); /* idempotent */
    entitle_engine_free(e);

    /* Freeing without closing stops the thread too (valgrind and ASan check nothing leaks). */
    e = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_OK);
    entitle_engine_free(e);
    close(fd);
}

static bool wait_version(const entitle_engine *e, uint64_t version, double seconds) {
    double deadline = now_seconds() + seconds;
    while (entitle_engine_version(e) != version && now_seconds() < deadline) sleep_ms(20);
    return entitle_engine_version(e) == version;
}

/* In a forked child: after_fork restarts the sync thread, which goes on syncing. */
static int child_after_fork(entitle_engine *e) {
    entitle_engine_after_fork(e);
    entitle_status before;
    if (entitle_engine_status(e, &before) != ENTITLE_RESULT_OK || before.version != 2) return 10;
    if (entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) != ENTITLE_UNLIMITED)
        return 11;
    double deadline = now_seconds() + 20;
    entitle_status s = before;
    while (s.syncs <= before.syncs && now_seconds() < deadline) {
        sleep_ms(20);
        if (entitle_engine_status(e, &s) != ENTITLE_RESULT_OK) return 12;
    }
    if (s.syncs <= before.syncs) return 13;
    entitle_engine_close(e);
    return 0;
}

static void test_live_edge(const char *url, const char *publish, const char *cache_dir) {
    entitle_sync_config c = config_for(url);
    c.cache_dir = (const uint8_t *)cache_dir;
    c.cache_dir_len = strlen(cache_dir);
    c.poll_interval_ms = 50;
    c.persist_interval_ms = 50;
    c.request_timeout_ms = 5000;
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_OK);
    if (e == NULL) return;
    CHECK(entitle_engine_wait_ready(e, 20000));
    CHECK(wait_version(e, 1, 20));
    entitle_status s = status_of(e);
    CHECKF(s.state == ENTITLE_SYNC_STATE_READY, "state %s", entitle_sync_state_name(s.state));
    CHECK(s.syncing && s.version == 1 && s.syncs >= 1 && s.snapshots_fetched >= 1);
    CHECK(s.has_last_success && s.has_data_age && s.has_edge_version && s.edge_version == 1);
    CHECK(!s.warm_start);
    char buf[1024];
    CHECK(strlen(status_text(e, ENTITLE_STATUS_TEXT_LINEAGE, buf, sizeof buf)) > 0);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);
    CHECK(entitle_engine_enabled_at(e, STR("cus_pro"), STR("sso"), AT));
    entitle_decision d;
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_new"), STR("projects"), AT, &d),
                 ENTITLE_RESULT_OK);
    CHECK(d.version == 1 && d.reason == ENTITLE_REASON_CUSTOMER_NOT_FOUND);

    /* The first sync was a version change from 0 to 1. */
    entitle_event ev;
    uint64_t after = 0;
    CHECK(wait_event(e, &after, ENTITLE_EVENT_VERSION_CHANGED, 20, &ev, buf, sizeof buf));
    CHECK(ev.old_version == 0 && ev.new_version == 1);

    /* Publish v2: the engine picks it up by itself, and says so. */
    int rc = system(publish);
    CHECKF(rc == 0, "publish command failed: %d", rc);
    CHECK(wait_version(e, 2, 20));
    CHECK(wait_event(e, &after, ENTITLE_EVENT_VERSION_CHANGED, 20, &ev, buf, sizeof buf));
    CHECK(ev.old_version == 1 && ev.new_version == 2);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_limit_at(e, STR("cus_new"), STR("projects"), AT) == 100);
    /* The version is swapped in (and its event recorded) during the round; the round's counters
     * follow when it ends. */
    double counted = now_seconds() + 20;
    while (((s = status_of(e)).edge_version != 2 || s.updates == 0) && now_seconds() < counted)
        sleep_ms(20);
    CHECK(s.version == 2 && s.updates >= 1 && s.edge_version == 2);
    CHECKF(s.deltas_applied + s.snapshots_fetched >= 2, "deltas %" PRIu64 ", snapshots %" PRIu64,
           s.deltas_applied, s.snapshots_fetched);

    /* Fork: the child restarts the sync thread and keeps syncing; the parent is unaffected.
     * The child reports through a pipe, not its exit status: under valgrind the child's exit
     * status would also count the parent's thread state that a forked child cannot free (the
     * parent's sync thread does not exist there; its handle is deliberately left alone). */
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        unsigned char code = (unsigned char)child_after_fork(e);
        ssize_t w = write(fds[1], &code, 1);
        _exit(w == 1 ? 0 : 1);
    }
    CHECK(pid > 0);
    close(fds[1]);
    unsigned char code = 255;
    CHECK(read(fds[0], &code, 1) == 1);
    close(fds[0]);
    CHECKF(code == 0, "the forked child failed with code %u", code);
    int wstatus = 0;
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    uint64_t syncs = status_of(e).syncs;
    double deadline = now_seconds() + 20;
    while (status_of(e).syncs <= syncs && now_seconds() < deadline) sleep_ms(20);
    CHECK(status_of(e).syncs > syncs);

    /* Close: no more rounds, the last content keeps answering. */
    entitle_engine_close(e);
    syncs = status_of(e).syncs;
    sleep_ms(300);
    CHECK(status_of(e).syncs == syncs);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_wait_ready(e, 0));
    entitle_engine_free(e);

    /* Warm start: a new engine serves the cached snapshot before reaching the edge. */
    e = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_OK);
    if (e == NULL) return;
    s = status_of(e);
    CHECK(s.warm_start && s.version >= 1);
    CHECK(entitle_engine_wait_ready(e, 0));
    CHECK(entitle_engine_enabled_at(e, STR("cus_pro"), STR("sso"), AT));
    CHECK(wait_version(e, 2, 20));
    entitle_engine_free(e);
}

/* max_artifact_bytes below the edge's snapshot: refused before download, reported, no content. */
static void test_max_artifact_bytes(const char *url) {
    entitle_sync_config c = config_for(url);
    c.poll_interval_ms = 20;
    c.max_backoff_ms = 50;
    c.max_artifact_bytes = 64;
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_connect(&c, &e), ENTITLE_RESULT_OK);
    char buf[512];
    bool refused = false;
    double end = now_seconds() + 20;
    while (!refused && now_seconds() < end) {
        refused = strstr(status_text(e, ENTITLE_STATUS_TEXT_LAST_ERROR, buf, sizeof buf),
                         "more than max_artifact_bytes (64): not downloaded") != NULL;
        if (!refused) {
            sleep_ms(10);
        }
    }
    CHECKF(refused, "last error: %s", buf);
    entitle_status s = status_of(e);
    CHECK(s.version == 0 && s.failures > 0 && !entitle_engine_wait_ready(e, 0));
    entitle_engine_free(e);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FIXTURE_DIR EDGE_URL PUBLISH_COMMAND CACHE_DIR\n", argv[0]);
        return 2;
    }
    test_config_misuse();
    test_plain_engine(argv[1]);
    test_events(argv[1]);
    test_unreachable_edge();
    test_max_artifact_bytes(argv[2]);
    test_live_edge(argv[2], argv[3], argv[4]);
    return report("ffi-sync");
}
