/*
 * Exercises every function of entitle.h, including misuse: NULL pointers, invalid UTF-8, empty
 * strings, huge lengths, out-parameters left untouched on failure, thread-local error details.
 *
 * Usage: test_ffi FIXTURE_DIR
 * FIXTURE_DIR holds v1.json (ffi/tests/data), v1.snap and v2.snap (built from v1.json / v2.json at
 * content versions 1 and 2) and v1-v2.delta (their diff), as scripts/test-ffi.sh prepares them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "json.h"

#define AT 1700000000 /* a fixed evaluation time before cus_cancelling's cancel_at */
#define CANCEL_AT 1800000000

static const char *fixture_dir;

typedef struct {
    char *bytes;
    size_t len;
} blob;

static blob fixture(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    blob b = {NULL, 0};
    b.bytes = read_file(path, &b.len);
    if (b.bytes == NULL) {
        fprintf(stderr, "cannot read fixture %s\n", path);
        exit(2);
    }
    return b;
}

static entitle_engine *engine_from(blob b) {
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)b.bytes, b.len, &e),
                 ENTITLE_RESULT_OK);
    if (e == NULL) {
        fprintf(stderr, "cannot continue without an engine\n");
        exit(2);
    }
    return e;
}

static entitle_decision check_at(const entitle_engine *e, const char *c, const char *f, int64_t at) {
    entitle_decision d;
    memset(&d, 0xAB, sizeof d);
    CHECK_RESULT(entitle_engine_check_at(e, STR(c), STR(f), at, &d), ENTITLE_RESULT_OK);
    return d;
}

/* Checks a decision's every field. */
static void expect_decision(entitle_decision d, entitle_feature_type type, uint64_t value,
                            bool unlimited, bool enabled, entitle_reason reason, uint64_t version,
                            const char *what) {
    CHECKF(d.feature_type == type, "%s: feature_type %u, want %u", what, d.feature_type, type);
    CHECKF(d.value == value, "%s: value %" PRIu64 ", want %" PRIu64, what, d.value, value);
    CHECKF(d.unlimited == unlimited, "%s: unlimited %d", what, d.unlimited);
    CHECKF(d.enabled == enabled, "%s: enabled %d", what, d.enabled);
    CHECKF(d.reason == reason, "%s: reason %s, want %s", what, entitle_reason_name(d.reason),
           entitle_reason_name(reason));
    CHECKF(d.version == version, "%s: version %" PRIu64 ", want %" PRIu64, what, d.version,
           version);
}

static void test_versions_and_names(void) {
    const char *v = entitle_version();
    CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL);
    CHECK(entitle_snapshot_format_version() == 1);
    CHECK(entitle_delta_format_version() == 1);

    /* Every result code has its own text; unknown codes have a fallback. */
    for (uint32_t r = 0; r <= ENTITLE_RESULT_FEATURE_MISMATCH; r++) {
        const char *m = entitle_result_message(r);
        CHECKF(m != NULL && strlen(m) > 0 && strcmp(m, "unknown result code") != 0, "code %u", r);
        for (uint32_t s = 0; s < r; s++) {
            CHECKF(strcmp(m, entitle_result_message(s)) != 0, "codes %u and %u share text", r, s);
        }
    }
    CHECK(strcmp(entitle_result_message(ENTITLE_RESULT_OK), "success") == 0);
    CHECK(strcmp(entitle_result_message(999), "unknown result code") == 0);
    CHECK(strcmp(entitle_result_message(UINT32_MAX), "unknown result code") == 0);

    CHECK(strcmp(entitle_reason_name(ENTITLE_REASON_DEFAULT), "default") == 0);
    CHECK(strcmp(entitle_reason_name(ENTITLE_REASON_SUBSCRIPTION), "subscription") == 0);
    CHECK(strcmp(entitle_reason_name(ENTITLE_REASON_OVERRIDE), "override") == 0);
    CHECK(strcmp(entitle_reason_name(ENTITLE_REASON_CUSTOMER_NOT_FOUND), "customer_not_found") ==
          0);
    CHECK(strcmp(entitle_reason_name(ENTITLE_REASON_FEATURE_NOT_FOUND), "feature_not_found") == 0);
    CHECK(strcmp(entitle_reason_name(5), "unknown") == 0);
    CHECK(strcmp(entitle_feature_type_name(ENTITLE_FEATURE_TYPE_FLAG), "flag") == 0);
    CHECK(strcmp(entitle_feature_type_name(ENTITLE_FEATURE_TYPE_LIMIT), "limit") == 0);
    CHECK(strcmp(entitle_feature_type_name(ENTITLE_FEATURE_TYPE_UNKNOWN), "unknown") == 0);
    CHECK(strcmp(entitle_feature_type_name(77), "unknown") == 0);
    CHECK(ENTITLE_UNLIMITED == UINT64_MAX);
}

static void test_create(void) {
    entitle_engine *sentinel = (entitle_engine *)(uintptr_t)0x1;
    entitle_engine *e;

    /* From catalog JSON. */
    blob catalog = fixture("v1.json");
    e = NULL;
    CHECK_RESULT(entitle_engine_from_catalog_json((const uint8_t *)catalog.bytes, catalog.len, &e),
                 ENTITLE_RESULT_OK);
    CHECK(e != NULL);
    CHECK(entitle_engine_version(e) == 0);
    entitle_engine_free(e);

    e = sentinel;
    CHECK_RESULT(entitle_engine_from_catalog_json((const uint8_t *)catalog.bytes, catalog.len, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_from_catalog_json(NULL, 5, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(e == sentinel);
    CHECK_RESULT(entitle_engine_from_catalog_json((const uint8_t *)catalog.bytes, SIZE_MAX, &e),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_from_catalog_json((const uint8_t *)catalog.bytes,
                                                  (size_t)PTRDIFF_MAX + 1, &e),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    /* NULL with length 0 is the empty document: not a catalog. */
    CHECK_RESULT(entitle_engine_from_catalog_json(NULL, 0, &e), ENTITLE_RESULT_INVALID_CATALOG);
    CHECK(strncmp(last_error(), "catalog", 7) == 0);
    CHECK_RESULT(entitle_engine_from_catalog_json(STR("\"features\""), &e),
                 ENTITLE_RESULT_INVALID_CATALOG);
    CHECK_RESULT(entitle_engine_from_catalog_json(STR("{\"features\": [\xff]}"), &e),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK(strstr(last_error(), "json") != NULL && strstr(last_error(), "UTF-8") != NULL);
    CHECK_RESULT(entitle_engine_from_catalog_json(
                     STR("{\"features\": [{\"key\": \"seats\", \"type\": \"limit\"}], "
                         "\"customers\": [{\"id\": \"c\", \"overrides\": {\"seats\": -1}}]}"),
                     &e),
                 ENTITLE_RESULT_INVALID_CATALOG);
    CHECKF(strncmp(last_error(), "customers[0].overrides.seats: ", 30) == 0, "detail: %s",
           last_error());
    CHECK(e == sentinel);
    free(catalog.bytes);

    /* From snapshot bytes. */
    blob snap = fixture("v1.snap");
    e = NULL;
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)snap.bytes, snap.len, &e),
                 ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 1);
    entitle_engine_free(e);

    e = sentinel;
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)snap.bytes, snap.len, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_from_snapshot(NULL, snap.len, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)snap.bytes, SIZE_MAX, &e),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_from_snapshot(NULL, 0, &e), ENTITLE_RESULT_CORRUPT);
    CHECK_RESULT(entitle_engine_from_snapshot(STR("{\"features\": []}"), &e),
                 ENTITLE_RESULT_BAD_MAGIC);
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)snap.bytes, snap.len - 1, &e),
                 ENTITLE_RESULT_CORRUPT);
    CHECK(strstr(last_error(), "truncated") != NULL);
    char *copy = malloc(snap.len);
    memcpy(copy, snap.bytes, snap.len);
    copy[snap.len / 2] ^= 0x40;
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)copy, snap.len, &e),
                 ENTITLE_RESULT_CORRUPT);
    CHECK(strstr(last_error(), "checksum") != NULL);
    memcpy(copy, snap.bytes, snap.len);
    copy[8] = 99; /* format version */
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)copy, snap.len, &e),
                 ENTITLE_RESULT_UNSUPPORTED_VERSION);
    CHECK(strstr(last_error(), "99") != NULL);
    free(copy);
    blob delta = fixture("v1-v2.delta");
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)delta.bytes, delta.len, &e),
                 ENTITLE_RESULT_BAD_MAGIC);
    free(delta.bytes);
    CHECK(e == sentinel);

    /* The caller may free the bytes right after creation: the engine keeps its own copy. */
    char *transient = malloc(snap.len);
    memcpy(transient, snap.bytes, snap.len);
    e = NULL;
    CHECK_RESULT(entitle_engine_from_snapshot((const uint8_t *)transient, snap.len, &e),
                 ENTITLE_RESULT_OK);
    memset(transient, 0, snap.len);
    free(transient);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);
    entitle_engine_free(e);
    free(snap.bytes);

    /* From a file: a snapshot or a catalog, told apart by content. */
    char path[4096];
    snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
    e = NULL;
    CHECK_RESULT(entitle_engine_from_file(STR(path), &e), ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 1);
    entitle_engine_free(e);
    snprintf(path, sizeof path, "%s/v1.json", fixture_dir);
    e = NULL;
    CHECK_RESULT(entitle_engine_from_file(STR(path), &e), ENTITLE_RESULT_OK);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);
    entitle_engine_free(e);

    e = sentinel;
    snprintf(path, sizeof path, "%s/does-not-exist.snap", fixture_dir);
    CHECK_RESULT(entitle_engine_from_file(STR(path), &e), ENTITLE_RESULT_IO);
    CHECKF(strstr(last_error(), "does-not-exist.snap") != NULL, "detail: %s", last_error());
    CHECK_RESULT(entitle_engine_from_file(STR(fixture_dir), &e), ENTITLE_RESULT_IO);
    /* Paths are the OS's bytes: a name that is not UTF-8 is a path like any other. */
    CHECK_RESULT(entitle_engine_from_file(STR("/nonexistent/\xff\xfe.snap"), &e),
                 ENTITLE_RESULT_IO);
    CHECK_RESULT(entitle_engine_from_file((const uint8_t *)"a\0b", 3, &e),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    {
        char odd[4200];
        snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
        snprintf(odd, sizeof odd, "%s/v1-\xff\xfe.snap", fixture_dir);
        unlink(odd);
        CHECK(link(path, odd) == 0);
        entitle_engine *odd_engine = NULL;
        CHECK_RESULT(entitle_engine_from_file(STR(odd), &odd_engine), ENTITLE_RESULT_OK);
        CHECK(odd_engine != NULL && entitle_engine_version(odd_engine) == 1);
        entitle_engine_free(odd_engine);
        unlink(odd);
    }
    CHECK_RESULT(entitle_engine_from_file(NULL, 3, &e), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_from_file(NULL, 0, &e), ENTITLE_RESULT_IO);
    CHECK_RESULT(entitle_engine_from_file(STR(path), NULL), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_from_file((const uint8_t *)path, SIZE_MAX, &e),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK(e == sentinel);

    /* Freeing NULL is a no-op. */
    entitle_engine_free(NULL);
    CHECK(1);
}

static void test_lookups(const entitle_engine *e) {
    /* A pro customer: flag, limit, per-unit limit, default-unlimited limit, default-true flag. */
    CHECK(entitle_engine_enabled_at(e, STR("cus_pro"), STR("sso"), AT));
    CHECK(entitle_engine_enabled(e, STR("cus_pro"), STR("sso")));
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);
    CHECK(entitle_engine_limit(e, STR("cus_pro"), STR("projects")) == 50);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("seats"), AT) == 5);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("api_calls"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("sso"), AT) == 0); /* a flag */
    CHECK(entitle_engine_enabled_at(e, STR("cus_pro"), STR("beta"), AT));
    CHECK(entitle_engine_allows_at(e, STR("cus_pro"), STR("projects"), 49, 1, AT));
    CHECK(!entitle_engine_allows_at(e, STR("cus_pro"), STR("projects"), 50, 1, AT));
    CHECK(entitle_engine_allows_at(e, STR("cus_pro"), STR("projects"), 50, 0, AT));
    CHECK(!entitle_engine_allows_at(e, STR("cus_pro"), STR("projects"), UINT64_MAX, 1, AT));
    CHECK(!entitle_engine_allows_at(e, STR("cus_pro"), STR("projects"), 1, UINT64_MAX, AT));
    CHECK(entitle_engine_allows(e, STR("cus_pro"), STR("projects"), 0, 50));
    CHECK(!entitle_engine_allows(e, STR("cus_pro"), STR("projects"), 0, 51));
    CHECK(entitle_engine_allows_at(e, STR("cus_pro"), STR("api_calls"), UINT64_MAX, UINT64_MAX,
                                   AT));
    CHECK(entitle_engine_allows_at(e, STR("cus_pro"), STR("sso"), 1000, 1000, AT));

    /* Unlimited through a product. */
    CHECK(entitle_engine_limit_at(e, STR("cus_enterprise"), STR("projects"), AT) ==
          ENTITLE_UNLIMITED);
    CHECK(entitle_engine_enabled_at(e, STR("cus_enterprise"), STR("projects"), AT));
    CHECK(entitle_engine_allows_at(e, STR("cus_enterprise"), STR("projects"), INT64_MAX, 1, AT));
    CHECK(entitle_engine_limit_at(e, STR("cus_enterprise"), STR("seats"), AT) == 20);

    /* Time: a subscription grants only while cancel_at > at. */
    CHECK(entitle_engine_enabled_at(e, STR("cus_cancelling"), STR("sso"), CANCEL_AT - 1));
    CHECK(!entitle_engine_enabled_at(e, STR("cus_cancelling"), STR("sso"), CANCEL_AT));
    CHECK(entitle_engine_limit_at(e, STR("cus_cancelling"), STR("projects"), CANCEL_AT - 1) == 50);
    CHECK(entitle_engine_limit_at(e, STR("cus_cancelling"), STR("projects"), CANCEL_AT) == 3);
    CHECK(entitle_engine_allows_at(e, STR("cus_cancelling"), STR("projects"), 3, 1, CANCEL_AT - 1));
    CHECK(!entitle_engine_allows_at(e, STR("cus_cancelling"), STR("projects"), 3, 1, CANCEL_AT));

    /* Overrides, long ids, Unicode ids (exact bytes). */
    CHECK(entitle_engine_limit_at(e, STR("cus_override"), STR("projects"), AT) == 7);
    CHECK(!entitle_engine_enabled_at(e, STR("cus_override"), STR("beta"), AT));
    CHECK(entitle_engine_enabled_at(e, STR("cus_a_customer_id_longer_than_nineteen_bytes"),
                                    STR("sso"), AT));
    CHECK(!entitle_engine_enabled_at(e, STR("cus_a_customer_id_longer_than_nineteen_byte"),
                                     STR("sso"), AT));
    CHECK(entitle_engine_limit_at(e, STR("cus_ünïcødé_😀"), STR("projects"), AT) == 9);
    CHECK(entitle_engine_limit_at(e, STR("CUS_PRO"), STR("projects"), AT) == 3);

    /* Unknown customer: the feature's default. Unknown feature: false / 0. */
    CHECK(entitle_engine_limit_at(e, STR("cus_nobody"), STR("projects"), AT) == 3);
    CHECK(entitle_engine_limit_at(e, STR("cus_nobody"), STR("api_calls"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_enabled_at(e, STR("cus_nobody"), STR("beta"), AT));
    CHECK(!entitle_engine_enabled_at(e, STR("cus_nobody"), STR("sso"), AT));
    CHECK(entitle_engine_allows_at(e, STR("cus_nobody"), STR("projects"), 2, 1, AT));
    CHECK(!entitle_engine_allows_at(e, STR("cus_nobody"), STR("projects"), 3, 1, AT));
    CHECK(!entitle_engine_enabled_at(e, STR("cus_pro"), STR("nope"), AT));
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("nope"), AT) == 0);
    CHECK(!entitle_engine_allows_at(e, STR("cus_pro"), STR("nope"), 0, 0, AT));
    CHECK(!entitle_engine_enabled(e, STR("cus_nobody"), STR("nope")));

    /* Empty strings are valid keys that are never found; NULL with length 0 is the empty string. */
    CHECK(entitle_engine_limit_at(e, STR(""), STR("projects"), AT) == 3);
    CHECK(entitle_engine_limit_at(e, NULL, 0, STR("projects"), AT) == 3);
    CHECK(!entitle_engine_enabled_at(e, STR("cus_pro"), NULL, 0, AT));
    CHECK(!entitle_engine_enabled_at(e, NULL, 0, NULL, 0, AT));
    CHECK(entitle_engine_enabled(e, NULL, 0, STR("beta")));
}

static void test_lookup_misuse(const entitle_engine *e) {
    const uint8_t *c = (const uint8_t *)"cus_pro";
    const uint8_t *f = (const uint8_t *)"sso";
    /* A NULL engine answers false / 0. */
    CHECK(!entitle_engine_enabled(NULL, c, 7, f, 3));
    CHECK(!entitle_engine_enabled_at(NULL, c, 7, f, 3, AT));
    CHECK(entitle_engine_limit(NULL, c, 7, STR("projects")) == 0);
    CHECK(entitle_engine_limit_at(NULL, c, 7, STR("projects"), AT) == 0);
    CHECK(!entitle_engine_allows(NULL, c, 7, f, 3, 0, 1));
    CHECK(!entitle_engine_allows_at(NULL, c, 7, f, 3, 0, 1, AT));
    CHECK(entitle_engine_version(NULL) == 0);

    /* NULL strings with a length answer false / 0, even where the default would be true. */
    CHECK(!entitle_engine_enabled(e, NULL, 7, STR("beta")));
    CHECK(!entitle_engine_enabled_at(e, c, 7, NULL, 3, AT));
    CHECK(entitle_engine_limit_at(e, NULL, 7, STR("api_calls"), AT) == 0);
    CHECK(entitle_engine_limit(e, c, 7, NULL, 8) == 0);
    CHECK(!entitle_engine_allows_at(e, NULL, 7, STR("api_calls"), 0, 1, AT));
    CHECK(!entitle_engine_allows(e, c, 7, NULL, 9, 0, 1));

    /* Huge lengths (above PTRDIFF_MAX) are refused without reading. */
    CHECK(!entitle_engine_enabled_at(e, c, SIZE_MAX, STR("beta"), AT));
    CHECK(!entitle_engine_enabled_at(e, c, 7, f, SIZE_MAX, AT));
    CHECK(!entitle_engine_enabled(e, c, (size_t)PTRDIFF_MAX + 1, STR("beta")));
    CHECK(entitle_engine_limit_at(e, c, SIZE_MAX, STR("api_calls"), AT) == 0);
    CHECK(!entitle_engine_allows_at(e, c, SIZE_MAX, STR("api_calls"), 0, 1, AT));

    /* Invalid UTF-8 never matches a key: it reads as an unknown customer / feature. */
    CHECK(entitle_engine_enabled_at(e, STR("\xff\xfe"), STR("beta"), AT)); /* beta's default */
    CHECK(!entitle_engine_enabled_at(e, STR("cus_pro\xc3"), STR("sso"), AT));
    CHECK(!entitle_engine_enabled_at(e, STR("cus_pro"), STR("ss\xff"), AT));
    CHECK(entitle_engine_limit_at(e, STR("\xc0\x80"), STR("projects"), AT) == 3);
    CHECK(!entitle_engine_allows_at(e, STR("cus_pro"), STR("\xed\xa0\x80"), 0, 1, AT));
    /* Embedded NUL bytes are ordinary bytes. */
    CHECK(entitle_engine_limit_at(e, (const uint8_t *)"cus_pro\0x", 9, STR("projects"), AT) == 3);
    CHECK(entitle_engine_limit_at(e, (const uint8_t *)"cus_pro\0x", 7, STR("projects"), AT) == 50);
}

static void test_check(const entitle_engine *e) {
    entitle_decision d;
    d = check_at(e, "cus_pro", "sso", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_FLAG, 1, false, true, ENTITLE_REASON_SUBSCRIPTION, 1,
                    "pro sso");
    d = check_at(e, "cus_pro", "projects", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, 50, false, true, ENTITLE_REASON_SUBSCRIPTION, 1,
                    "pro projects");
    d = check_at(e, "cus_pro", "api_calls", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, ENTITLE_UNLIMITED, true, true,
                    ENTITLE_REASON_DEFAULT, 1, "pro api_calls");
    d = check_at(e, "cus_enterprise", "projects", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, ENTITLE_UNLIMITED, true, true,
                    ENTITLE_REASON_SUBSCRIPTION, 1, "enterprise projects");
    d = check_at(e, "cus_override", "beta", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_FLAG, 0, false, false, ENTITLE_REASON_OVERRIDE, 1,
                    "override beta");
    d = check_at(e, "cus_cancelling", "projects", CANCEL_AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, 3, false, true, ENTITLE_REASON_DEFAULT, 1,
                    "cancelled projects");
    d = check_at(e, "cus_nobody", "projects", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, 3, false, true,
                    ENTITLE_REASON_CUSTOMER_NOT_FOUND, 1, "unknown customer");
    d = check_at(e, "cus_nobody", "nope", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_UNKNOWN, 0, false, false,
                    ENTITLE_REASON_FEATURE_NOT_FOUND, 1, "unknown feature, unknown customer");
    d = check_at(e, "", "", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_UNKNOWN, 0, false, false,
                    ENTITLE_REASON_FEATURE_NOT_FOUND, 1, "empty strings");
    d = check_at(e, "", "sso", AT);
    expect_decision(d, ENTITLE_FEATURE_TYPE_FLAG, 0, false, false,
                    ENTITLE_REASON_CUSTOMER_NOT_FOUND, 1, "empty customer");

    /* The "now" variant. */
    memset(&d, 0, sizeof d);
    CHECK_RESULT(entitle_engine_check(e, STR("cus_pro"), STR("seats"), &d), ENTITLE_RESULT_OK);
    expect_decision(d, ENTITLE_FEATURE_TYPE_LIMIT, 5, false, true, ENTITLE_REASON_SUBSCRIPTION, 1,
                    "pro seats now");
    CHECK_RESULT(entitle_engine_check(e, NULL, 0, NULL, 0, &d), ENTITLE_RESULT_OK);
    CHECK(d.reason == ENTITLE_REASON_FEATURE_NOT_FOUND);

    /* Misuse is rejected with a result code and the out-parameter is left untouched. */
    entitle_decision untouched;
    memset(&untouched, 0x5A, sizeof untouched);
    entitle_decision out = untouched;
    CHECK_RESULT(entitle_engine_check_at(NULL, STR("cus_pro"), STR("sso"), AT, &out),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(strstr(last_error(), "engine") != NULL);
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_pro"), STR("sso"), AT, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_check_at(e, NULL, 3, STR("sso"), AT, &out),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(strstr(last_error(), "customer") != NULL);
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_pro"), NULL, 3, AT, &out),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(strstr(last_error(), "feature") != NULL);
    CHECK_RESULT(entitle_engine_check_at(e, (const uint8_t *)"x", SIZE_MAX, STR("sso"), AT, &out),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_pro"), (const uint8_t *)"x",
                                         (size_t)PTRDIFF_MAX + 1, AT, &out),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_check_at(e, STR("\xff\xfe"), STR("sso"), AT, &out),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK(strstr(last_error(), "customer") != NULL);
    CHECK_RESULT(entitle_engine_check_at(e, STR("cus_pro"), STR("ss\xff"), AT, &out),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK(strstr(last_error(), "feature") != NULL);
    CHECK_RESULT(entitle_engine_check_at(e, STR("\xe2\x82"), STR("nope"), AT, &out),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_check(e, STR("cus_\xf0\x9f\x98"), STR("sso"), &out),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_check(NULL, STR("cus_pro"), STR("sso"), &out),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(memcmp(&out, &untouched, sizeof out) == 0);
}

static void test_entitlements(const entitle_engine *e) {
    static const char *const keys[] = {"sso", "projects", "seats", "api_calls", "beta"};
    entitle_entitlements *list = NULL;
    CHECK_RESULT(entitle_engine_entitlements_at(e, STR("cus_pro"), AT, &list), ENTITLE_RESULT_OK);
    CHECK(entitle_entitlements_len(list) == 5);
    for (size_t i = 0; i < entitle_entitlements_len(list); i++) {
        entitle_entitlement item;
        CHECK_RESULT(entitle_entitlements_get(list, i, &item), ENTITLE_RESULT_OK);
        CHECK(item.key_len == strlen(keys[i]) && memcmp(item.key, keys[i], item.key_len) == 0);
        CHECK(item.key[item.key_len] == '\0');
        entitle_decision d = check_at(e, "cus_pro", keys[i], AT);
        CHECKF(same_decision(&d, &item.decision), "entry %zu differs from check", i);
    }
    entitle_entitlement untouched;
    memset(&untouched, 0x33, sizeof untouched);
    entitle_entitlement item = untouched;
    CHECK_RESULT(entitle_entitlements_get(list, 5, &item), ENTITLE_RESULT_OUT_OF_RANGE);
    CHECK_RESULT(entitle_entitlements_get(list, SIZE_MAX, &item), ENTITLE_RESULT_OUT_OF_RANGE);
    CHECK_RESULT(entitle_entitlements_get(NULL, 0, &item), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_entitlements_get(list, 0, NULL), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(memcmp(&item, &untouched, sizeof item) == 0);
    CHECK(entitle_entitlements_len(NULL) == 0);
    entitle_entitlements_free(list);
    entitle_entitlements_free(NULL);

    /* Unknown customer: every feature's default; the "now" variant; time matters. */
    list = NULL;
    CHECK_RESULT(entitle_engine_entitlements(e, STR("cus_nobody"), &list), ENTITLE_RESULT_OK);
    CHECK(entitle_entitlements_len(list) == 5);
    for (size_t i = 0; i < entitle_entitlements_len(list); i++) {
        CHECK_RESULT(entitle_entitlements_get(list, i, &item), ENTITLE_RESULT_OK);
        CHECK(item.decision.reason == ENTITLE_REASON_CUSTOMER_NOT_FOUND);
    }
    entitle_entitlements_free(list);
    list = NULL;
    CHECK_RESULT(entitle_engine_entitlements_at(e, STR("cus_cancelling"), CANCEL_AT, &list),
                 ENTITLE_RESULT_OK);
    CHECK_RESULT(entitle_entitlements_get(list, 1, &item), ENTITLE_RESULT_OK);
    CHECK(item.decision.value == 3 && item.decision.reason == ENTITLE_REASON_DEFAULT);
    entitle_entitlements_free(list);
    list = NULL;
    CHECK_RESULT(entitle_engine_entitlements_at(e, NULL, 0, AT, &list), ENTITLE_RESULT_OK);
    CHECK(entitle_entitlements_len(list) == 5);
    entitle_entitlements_free(list);

    /* Misuse. */
    entitle_entitlements *sentinel = (entitle_entitlements *)(uintptr_t)0x1;
    list = sentinel;
    CHECK_RESULT(entitle_engine_entitlements_at(NULL, STR("cus_pro"), AT, &list),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_entitlements_at(e, STR("cus_pro"), AT, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_entitlements_at(e, NULL, 4, AT, &list),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_entitlements_at(e, STR("\xff"), AT, &list),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_entitlements(e, (const uint8_t *)"x", SIZE_MAX, &list),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK(list == sentinel);
}

static void test_list_outlives_engine(void) {
    blob snap = fixture("v1.snap");
    entitle_engine *e = engine_from(snap);
    entitle_entitlements *list = NULL;
    CHECK_RESULT(entitle_engine_entitlements_at(e, STR("cus_enterprise"), AT, &list),
                 ENTITLE_RESULT_OK);
    entitle_engine_free(e);
    entitle_entitlement item;
    CHECK_RESULT(entitle_entitlements_get(list, 1, &item), ENTITLE_RESULT_OK);
    CHECK(item.key_len == 8 && memcmp(item.key, "projects", 8) == 0 && item.decision.unlimited);
    entitle_entitlements_free(list);
    free(snap.bytes);
}

static void test_updates(void) {
    blob v1 = fixture("v1.snap");
    blob v2 = fixture("v2.snap");
    blob delta = fixture("v1-v2.delta");
    entitle_engine *e = engine_from(v1);

    /* Replace with bytes. */
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v2.bytes, v2.len),
                 ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 2);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_limit_at(e, STR("cus_new"), STR("projects"), AT) == 100);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("seats"), AT) == 5);

    /* A failed replacement keeps the content. */
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v1.bytes, v1.len - 8),
                 ENTITLE_RESULT_CORRUPT);
    CHECK_RESULT(entitle_engine_replace_snapshot(e, STR("garbage")), ENTITLE_RESULT_BAD_MAGIC);
    CHECK_RESULT(entitle_engine_replace_snapshot(e, NULL, 0), ENTITLE_RESULT_CORRUPT);
    CHECK_RESULT(entitle_engine_replace_snapshot(e, NULL, 10), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v1.bytes, SIZE_MAX),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_replace_snapshot(NULL, (const uint8_t *)v1.bytes, v1.len),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(entitle_engine_version(e) == 2);

    /* Replace from a file. */
    char path[4096];
    snprintf(path, sizeof path, "%s/v1.snap", fixture_dir);
    CHECK_RESULT(entitle_engine_replace_file(e, STR(path)), ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 1);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == 50);
    snprintf(path, sizeof path, "%s/v1.json", fixture_dir);
    CHECK_RESULT(entitle_engine_replace_file(e, STR(path)), ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 0);
    snprintf(path, sizeof path, "%s/missing.snap", fixture_dir);
    CHECK_RESULT(entitle_engine_replace_file(e, STR(path)), ENTITLE_RESULT_IO);
    CHECK(strstr(last_error(), "missing.snap") != NULL);
    CHECK_RESULT(entitle_engine_replace_file(e, STR("\xff")), ENTITLE_RESULT_IO);
    CHECK_RESULT(entitle_engine_replace_file(e, NULL, 1), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_replace_file(NULL, STR(path)), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(entitle_engine_version(e) == 0);

    /* A delta applies only to its base. */
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v1.bytes, v1.len),
                 ENTITLE_RESULT_OK);
    uint64_t version = 12345;
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)delta.bytes, delta.len, &version),
                 ENTITLE_RESULT_OK);
    CHECK(version == 2);
    CHECK(entitle_engine_version(e) == 2);
    CHECK(entitle_engine_limit_at(e, STR("cus_pro"), STR("projects"), AT) == ENTITLE_UNLIMITED);
    CHECK(entitle_engine_limit_at(e, STR("cus_new"), STR("projects"), AT) == 100);
    entitle_decision d = check_at(e, "cus_new", "projects", AT);
    CHECK(d.version == 2 && d.reason == ENTITLE_REASON_OVERRIDE);

    version = 12345;
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)delta.bytes, delta.len, &version),
                 ENTITLE_RESULT_WRONG_BASE);
    CHECK(strstr(last_error(), "base") != NULL);
    CHECK(version == 12345);
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)v1.bytes, v1.len, &version),
                 ENTITLE_RESULT_BAD_MAGIC);
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)delta.bytes, delta.len - 1, NULL),
                 ENTITLE_RESULT_CORRUPT);
    CHECK_RESULT(entitle_engine_apply_delta(e, NULL, 0, NULL), ENTITLE_RESULT_CORRUPT);
    CHECK_RESULT(entitle_engine_apply_delta(e, NULL, 4, NULL), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)delta.bytes, SIZE_MAX, NULL),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_apply_delta(NULL, (const uint8_t *)delta.bytes, delta.len, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(version == 12345);
    CHECK(entitle_engine_version(e) == 2);

    /* out_version may be NULL. */
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v1.bytes, v1.len),
                 ENTITLE_RESULT_OK);
    CHECK_RESULT(entitle_engine_apply_delta(e, (const uint8_t *)delta.bytes, delta.len, NULL),
                 ENTITLE_RESULT_OK);
    CHECK(entitle_engine_version(e) == 2);

    entitle_engine_free(e);
    free(v1.bytes);
    free(v2.bytes);
    free(delta.bytes);
}

static void *fail_on_other_thread(void *arg) {
    (void)arg;
    /* A new thread starts without a detail, and its failures do not touch other threads'. */
    CHECK(entitle_last_error_len() == 0);
    size_t n = 99;
    CHECK_RESULT(entitle_last_error_message(NULL, 0, &n), ENTITLE_RESULT_OK);
    CHECK(n == 0);
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_from_catalog_json(STR("[]"), &e), ENTITLE_RESULT_INVALID_CATALOG);
    CHECK(strncmp(last_error(), "catalog: ", 9) == 0);
    return NULL;
}

static void test_last_error(void) {
    entitle_engine *e = NULL;
    CHECK_RESULT(entitle_engine_from_catalog_json(
                     STR("{\"features\": [{\"key\": \"sso\", \"type\": \"flags\"}]}"), &e),
                 ENTITLE_RESULT_INVALID_CATALOG);
    const char *want = "features[0].type: ";
    size_t len = entitle_last_error_len();
    CHECK(len > strlen(want));

    char buf[512];
    size_t n = 0;
    CHECK_RESULT(entitle_last_error_message((uint8_t *)buf, sizeof buf, &n), ENTITLE_RESULT_OK);
    CHECK(n == len && strncmp(buf, want, strlen(want)) == 0);

    /* Too small: nothing written, the detail kept. */
    memset(buf, 'z', sizeof buf);
    n = 7777;
    CHECK(entitle_last_error_message((uint8_t *)buf, len - 1, &n) ==
          ENTITLE_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 7777 && buf[0] == 'z');
    CHECK(entitle_last_error_message((uint8_t *)buf, sizeof buf, NULL) ==
          ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(entitle_last_error_message(NULL, 10, &n) == ENTITLE_RESULT_NULL_PARAMETER);
    CHECK(entitle_last_error_message(NULL, 0, &n) == ENTITLE_RESULT_BUFFER_TOO_SMALL);
    /* Exactly the right size works, and reading does not clear the detail. */
    CHECK(entitle_last_error_message((uint8_t *)buf, len, &n) == ENTITLE_RESULT_OK && n == len);
    CHECK(entitle_last_error_len() == len);

    /* Successful calls leave the detail alone. */
    blob snap = fixture("v1.snap");
    entitle_engine *ok = engine_from(snap);
    CHECK(entitle_engine_enabled_at(ok, STR("cus_pro"), STR("sso"), AT));
    CHECK(entitle_last_error_len() == len);
    entitle_engine_free(ok);
    free(snap.bytes);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_other_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(entitle_last_error_len() == len);
    CHECK(strncmp(last_error(), want, strlen(want)) == 0);
}

/* Feature handles and batch calls: answers, swaps, misuse. */
static void test_handles(void) {
    blob v1 = fixture("v1.snap");
    entitle_engine *e = engine_from(v1);
    entitle_feature sso, projects, later;
    CHECK_RESULT(entitle_engine_feature(e, STR("sso"), &sso), ENTITLE_RESULT_OK);
    CHECK_RESULT(entitle_engine_feature(e, STR("projects"), &projects), ENTITLE_RESULT_OK);
    CHECK_RESULT(entitle_engine_feature(e, STR("later"), &later), ENTITLE_RESULT_OK);

    /* Single lookups through a handle. */
    CHECK(entitle_engine_feature_enabled(e, sso, STR("cus_pro")));
    CHECK(entitle_engine_feature_enabled_at(e, sso, STR("cus_cancelling"), CANCEL_AT - 1));
    CHECK(!entitle_engine_feature_enabled_at(e, sso, STR("cus_cancelling"), CANCEL_AT));
    CHECK(entitle_engine_feature_limit(e, projects, STR("cus_pro")) == 50);
    CHECK(entitle_engine_feature_limit_at(e, projects, STR("cus_nobody"), AT) == 3);
    CHECK(entitle_engine_feature_limit_at(e, sso, STR("cus_pro"), AT) == 0); /* a flag */
    CHECK(entitle_engine_feature_allows(e, projects, STR("cus_pro"), 49, 1));
    CHECK(!entitle_engine_feature_allows_at(e, projects, STR("cus_pro"), 50, 1, AT));
    entitle_decision d;
    CHECK_RESULT(entitle_engine_feature_check(e, projects, STR("cus_pro"), &d), ENTITLE_RESULT_OK);
    CHECK(d.value == 50 && d.reason == ENTITLE_REASON_SUBSCRIPTION && d.version == 1);
    CHECK_RESULT(entitle_engine_feature_check_at(e, later, STR("cus_pro"), AT, &d),
                 ENTITLE_RESULT_OK);
    CHECK(d.reason == ENTITLE_REASON_FEATURE_NOT_FOUND && !d.enabled);

    /* Misuse: false / 0 for plain answers, codes for the rest; out untouched on error. */
    entitle_feature zero = {0};
    CHECK(!entitle_engine_feature_enabled(e, zero, STR("cus_pro")));
    CHECK_RESULT(entitle_engine_feature_check_at(e, zero, STR("cus_pro"), AT, &d), ENTITLE_RESULT_OK);
    CHECK(d.reason == ENTITLE_REASON_FEATURE_NOT_FOUND);
    CHECK(!entitle_engine_feature_enabled(NULL, sso, STR("cus_pro")));
    CHECK(!entitle_engine_feature_enabled(e, sso, NULL, 3));
    CHECK(entitle_engine_feature_limit(e, projects, NULL, 3) == 0);
    CHECK_RESULT(entitle_engine_feature(NULL, STR("sso"), &later), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_feature(e, STR("sso"), NULL), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_feature(e, STR("\xff"), &later), ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_feature(e, NULL, 2, &later), ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_feature_check(e, sso, STR("\xff"), &d), ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_feature_check(e, sso, STR("cus_pro"), NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);

    /* Many customers, one feature: the ids packed end to end. */
    const char *ids = "cus_procus_nobodycus_enterprise";
    size_t ends[] = {7, 17, 31};
    entitle_decision out[3];
    memset(out, 0, sizeof out);
    CHECK_RESULT(entitle_engine_check_customers_at(e, projects, (const uint8_t *)ids, strlen(ids),
                                                   ends, 3, AT, out),
                 ENTITLE_RESULT_OK);
    CHECK(out[0].value == 50 && out[1].value == 3 && out[1].reason == ENTITLE_REASON_CUSTOMER_NOT_FOUND &&
          out[2].unlimited);
    CHECK_RESULT(entitle_engine_check_customers(e, sso, (const uint8_t *)ids, strlen(ids), ends, 3,
                                                out),
                 ENTITLE_RESULT_OK);
    CHECK(out[0].enabled && !out[1].enabled && out[2].enabled);
    /* Zero customers: NULL arrays are fine. */
    CHECK_RESULT(entitle_engine_check_customers(e, sso, NULL, 0, NULL, 0, NULL), ENTITLE_RESULT_OK);
    /* Bad ends: decreasing, or past ids_len. Nothing written. */
    size_t decreasing[] = {7, 5, 31};
    size_t past[] = {7, 17, 32};
    out[0].value = 12345;
    CHECK_RESULT(entitle_engine_check_customers(e, projects, (const uint8_t *)ids, strlen(ids),
                                                decreasing, 3, out),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_check_customers(e, projects, (const uint8_t *)ids, strlen(ids), past,
                                                3, out),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK(out[0].value == 12345);
    CHECK_RESULT(entitle_engine_check_customers(e, projects, (const uint8_t *)ids, strlen(ids), NULL,
                                                3, out),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_check_customers(e, projects, (const uint8_t *)ids, strlen(ids), ends,
                                                3, NULL),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_check_customers(e, projects, (const uint8_t *)ids, strlen(ids), ends,
                                                SIZE_MAX, out),
                 ENTITLE_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(entitle_engine_check_customers(NULL, projects, (const uint8_t *)ids, strlen(ids),
                                                ends, 3, out),
                 ENTITLE_RESULT_NULL_PARAMETER);

    /* One customer, many features. */
    entitle_feature many[] = {sso, projects, later, zero};
    entitle_decision four[4];
    CHECK_RESULT(entitle_engine_check_features_at(e, STR("cus_pro"), many, 4, AT, four),
                 ENTITLE_RESULT_OK);
    CHECK(four[0].enabled && four[1].value == 50 &&
          four[2].reason == ENTITLE_REASON_FEATURE_NOT_FOUND &&
          four[3].reason == ENTITLE_REASON_FEATURE_NOT_FOUND);
    CHECK_RESULT(entitle_engine_check_features(e, STR("cus_nobody"), many, 2, four),
                 ENTITLE_RESULT_OK);
    CHECK(!four[0].enabled && four[1].value == 3 &&
          four[1].reason == ENTITLE_REASON_CUSTOMER_NOT_FOUND);
    CHECK_RESULT(entitle_engine_check_features(e, STR("\xff"), many, 2, four),
                 ENTITLE_RESULT_INVALID_UTF8);
    CHECK_RESULT(entitle_engine_check_features(e, STR("cus_pro"), NULL, 2, four),
                 ENTITLE_RESULT_NULL_PARAMETER);
    CHECK_RESULT(entitle_engine_check_features(e, STR("cus_pro"), NULL, 0, NULL), ENTITLE_RESULT_OK);

    /* Swaps: a snapshot that reorders, removes and adds features. The handles follow their keys. */
    const char *reordered = "{\"features\": [{\"key\": \"later\", \"type\": \"flag\", \"default\": true},"
                            " {\"key\": \"projects\", \"type\": \"limit\", \"default\": 8}]}";
    char path[4096];
    snprintf(path, sizeof path, "%s/swap.json", fixture_dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(reordered, f);
        fclose(f);
    }
    CHECK_RESULT(entitle_engine_replace_file(e, STR(path)), ENTITLE_RESULT_OK);
    CHECK(entitle_engine_feature_limit(e, projects, STR("cus_pro")) == 8);
    CHECK(entitle_engine_feature_enabled(e, later, STR("cus_pro")));
    CHECK_RESULT(entitle_engine_feature_check(e, sso, STR("cus_pro"), &d), ENTITLE_RESULT_OK);
    CHECK(d.reason == ENTITLE_REASON_FEATURE_NOT_FOUND && d.value == 0 && !d.enabled);
    CHECK(!entitle_engine_feature_enabled(e, sso, STR("cus_pro")));
    CHECK(entitle_engine_feature_limit(e, sso, STR("cus_pro")) == 0);
    /* And back: the handles resolved before both swaps still answer for their keys. */
    CHECK_RESULT(entitle_engine_replace_snapshot(e, (const uint8_t *)v1.bytes, v1.len),
                 ENTITLE_RESULT_OK);
    CHECK(entitle_engine_feature_limit(e, projects, STR("cus_pro")) == 50);
    CHECK(entitle_engine_feature_enabled(e, sso, STR("cus_pro")));
    entitle_engine_free(e);
    free(v1.bytes);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];

    test_versions_and_names();
    test_create();
    blob snap = fixture("v1.snap");
    entitle_engine *e = engine_from(snap);
    test_lookups(e);
    test_lookup_misuse(e);
    test_check(e);
    test_entitlements(e);
    entitle_engine_free(e);
    free(snap.bytes);
    test_list_outlives_engine();
    test_updates();
    test_handles();
    test_last_error();
    return report("ffi-api");
}
