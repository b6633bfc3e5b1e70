/*
 * Runs the conformance suite (tests/conformance/NN-*.json and invalid/NAME.json) through the C ABI.
 *
 * Usage: test_conformance CONFORMANCE_DIR
 *
 * Valid files: the catalog's exact bytes are loaded with entitle_engine_from_catalog_json, then each
 * case is answered by entitle_engine_check_at, _enabled_at, _limit_at, _allows_at (when the case has
 * `usage`; `requested` defaults to 1) and the customer's entitlement list, and every field of
 * `expected` is compared. Invalid files: loading must fail with ENTITLE_RESULT_INVALID_CATALOG and a
 * detail that starts with `expect_error` followed by ':'.
 * Each case (and each invalid file) counts as one check.
 *
 * Then the handle and batch paths: every case again through an entitle_feature resolved on the engine,
 * one resolved before a swap on an engine whose snapshot has none of the features (re-resolved by
 * key), and one resolved on an engine with the same features in reverse order (another index), each
 * through entitle_engine_feature_check_at / _enabled_at / _limit_at / _allows_at; a handle used on the
 * engine without the features answers FEATURE_NOT_FOUND; and, per case, one
 * entitle_engine_check_customers_at over every customer of the file and one
 * entitle_engine_check_features_at over every feature of the file, each answer compared with
 * entitle_engine_check_at. Each case counts as one more check.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>

#include "check.h"
#include "json.h"

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted *.json file names in dir (malloc'd; free with free_names). */
static char **json_files(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    *count = 0;
    if (d == NULL) {
        return NULL;
    }
    char **names = NULL;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t n = strlen(ent->d_name);
        if (n < 6 || strcmp(ent->d_name + n - 5, ".json") != 0) {
            continue;
        }
        char **grown = realloc(names, (*count + 1) * sizeof *names);
        if (grown == NULL) {
            break;
        }
        names = grown;
        names[(*count)++] = strdup(ent->d_name);
    }
    closedir(d);
    if (*count > 0) {
        qsort(names, *count, sizeof *names, compare_names);
    }
    return names;
}

static void free_names(char **names, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}

static json_value *load_json(const char *path, char **text) {
    size_t len = 0;
    *text = read_file(path, &len);
    if (*text == NULL) {
        CHECKF(0, "%s: cannot read", path);
        return NULL;
    }
    char err[256];
    json_value *v = json_parse(*text, len, err, sizeof err);
    CHECKF(v != NULL, "%s: %s", path, err);
    return v;
}

static bool is_string(const json_value *v, const char *s) {
    return v != NULL && v->type == JSON_STRING && v->str_len == strlen(s) &&
           memcmp(v->str, s, v->str_len) == 0;
}

/* Runs one case; returns whether every field matched (printing each mismatch). */
static bool run_case(const entitle_engine *e, const char *file, const json_value *c) {
    const json_value *name = json_get(c, "name");
    const char *case_name = name && name->type == JSON_STRING ? name->str : "(unnamed)";
    const json_value *customer = json_get(c, "customer");
    const json_value *feature = json_get(c, "feature");
    const json_value *expected = json_get(c, "expected");
    int64_t at = 0;
    bool ok = true;
#define MISMATCH(...)                                                                      \
    do {                                                                                   \
        fprintf(stderr, "FAIL %s: %s: ", file, case_name);                                 \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        ok = false;                                                                        \
    } while (0)

    if (customer == NULL || customer->type != JSON_STRING || feature == NULL ||
        feature->type != JSON_STRING || expected == NULL || expected->type != JSON_OBJECT ||
        !json_int64(json_get(c, "at"), &at)) {
        MISMATCH("malformed case");
        return false;
    }
    const uint8_t *cu = (const uint8_t *)customer->str;
    size_t cl = customer->str_len;
    const uint8_t *fe = (const uint8_t *)feature->str;
    size_t fl = feature->str_len;

    entitle_decision d;
    entitle_result r = entitle_engine_check_at(e, cu, cl, fe, fl, at, &d);
    if (r != ENTITLE_RESULT_OK) {
        MISMATCH("check_at returned %s: %s", entitle_result_message(r), last_error());
        return false;
    }

    /* feature_type */
    const json_value *type = json_get(expected, "feature_type");
    if (type == NULL) {
        MISMATCH("expected.feature_type missing");
    } else if (type->type == JSON_NULL) {
        if (d.feature_type != ENTITLE_FEATURE_TYPE_UNKNOWN) MISMATCH("feature_type: want null");
    } else if (!is_string(type, entitle_feature_type_name(d.feature_type))) {
        MISMATCH("feature_type: got %s, want %.*s", entitle_feature_type_name(d.feature_type),
                 (int)type->raw_len, type->raw);
    }

    /* enabled, through check and through the hot call */
    const json_value *enabled = json_get(expected, "enabled");
    if (enabled == NULL || enabled->type != JSON_BOOL) {
        MISMATCH("expected.enabled missing");
    } else {
        if (d.enabled != enabled->boolean) MISMATCH("check: enabled %d", d.enabled);
        bool hot = entitle_engine_enabled_at(e, cu, cl, fe, fl, at);
        if (hot != enabled->boolean) MISMATCH("enabled_at: %d", hot);
    }

    /* limit: a number, "unlimited", or null (the number-returning call gives 0 there) */
    const json_value *limit = json_get(expected, "limit");
    uint64_t want_number = 0;
    bool want_unlimited = false;
    if (limit == NULL) {
        MISMATCH("expected.limit missing");
    } else if (limit->type == JSON_NULL) {
        if (d.feature_type == ENTITLE_FEATURE_TYPE_LIMIT) MISMATCH("limit: want null");
    } else if (is_string(limit, "unlimited")) {
        want_unlimited = true;
        want_number = ENTITLE_UNLIMITED;
        if (d.feature_type != ENTITLE_FEATURE_TYPE_LIMIT || !d.unlimited ||
            d.value != ENTITLE_UNLIMITED)
            MISMATCH("limit: want unlimited, got %" PRIu64, d.value);
    } else if (json_uint64(limit, &want_number)) {
        if (d.feature_type != ENTITLE_FEATURE_TYPE_LIMIT || d.unlimited || d.value != want_number)
            MISMATCH("limit: got %" PRIu64 " (unlimited %d), want %" PRIu64, d.value,
                     d.unlimited, want_number);
    } else {
        MISMATCH("expected.limit is not a number, \"unlimited\" or null");
    }
    if (limit != NULL) {
        uint64_t hot = entitle_engine_limit_at(e, cu, cl, fe, fl, at);
        if (hot != want_number) {
            MISMATCH("limit_at: got %" PRIu64 ", want %" PRIu64 " (unlimited %d)", hot,
                     want_number, want_unlimited);
        }
    }

    /* reason */
    const json_value *reason = json_get(expected, "reason");
    if (!is_string(reason, entitle_reason_name(d.reason))) {
        MISMATCH("reason: got %s, want %.*s", entitle_reason_name(d.reason),
                 reason ? (int)reason->raw_len : 4, reason ? reason->raw : "none");
    }

    /* allowed: present exactly when the case has usage */
    const json_value *usage = json_get(c, "usage");
    const json_value *allowed = json_get(expected, "allowed");
    if (usage != NULL) {
        uint64_t u = 0, q = 1;
        const json_value *requested = json_get(c, "requested");
        if (!json_uint64(usage, &u) || (requested != NULL && !json_uint64(requested, &q)) ||
            allowed == NULL || allowed->type != JSON_BOOL) {
            MISMATCH("malformed usage / requested / expected.allowed");
        } else {
            bool got = entitle_engine_allows_at(e, cu, cl, fe, fl, u, q, at);
            if (got != allowed->boolean) MISMATCH("allows_at(%" PRIu64 ", %" PRIu64 "): %d", u, q, got);
        }
    } else if (allowed != NULL) {
        MISMATCH("expected.allowed without usage");
    }

    /* The entitlement list agrees with check: the feature's entry, or no entry when unknown. */
    entitle_entitlements *list = NULL;
    r = entitle_engine_entitlements_at(e, cu, cl, at, &list);
    if (r != ENTITLE_RESULT_OK) {
        MISMATCH("entitlements_at returned %s", entitle_result_message(r));
    } else {
        bool found = false;
        for (size_t i = 0; i < entitle_entitlements_len(list); i++) {
            entitle_entitlement item;
            if (entitle_entitlements_get(list, i, &item) != ENTITLE_RESULT_OK) {
                MISMATCH("entitlements_get(%zu) failed", i);
                break;
            }
            if (item.key_len == fl && memcmp(item.key, fe, fl) == 0) {
                found = true;
                if (!same_decision(&item.decision, &d)) MISMATCH("list entry differs");
            }
        }
        if (found != (d.feature_type != ENTITLE_FEATURE_TYPE_UNKNOWN)) {
            MISMATCH("feature %s in the entitlement list", found ? "unexpectedly" : "missing");
        }
        entitle_entitlements_free(list);
    }
#undef MISMATCH
    return ok;
}

/* The catalog's features (raw JSON items) in reverse order, no products or customers, as catalog JSON
 * (malloc'd). */
static char *reversed_features_catalog(const json_value *catalog) {
    const json_value *features = json_get(catalog, "features");
    size_t cap = 32;
    for (size_t i = 0; features && i < features->n; i++) cap += features->items[i]->raw_len + 1;
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    size_t len = (size_t)snprintf(out, cap, "{\"features\":[");
    for (size_t k = 0; features && k < features->n; k++) {
        const json_value *f = features->items[features->n - 1 - k];
        if (k > 0) out[len++] = ',';
        memcpy(out + len, f->raw, f->raw_len);
        len += f->raw_len;
    }
    snprintf(out + len, cap - len, "]}");
    return out;
}

static entitle_feature resolve(const entitle_engine *e, const json_value *feature) {
    entitle_feature h = {0};
    entitle_result r = entitle_engine_feature(e, (const uint8_t *)feature->str, feature->str_len, &h);
    CHECKF(r == ENTITLE_RESULT_OK, "feature %s: %s", feature->str, last_error());
    return h;
}

/* One case through a handle: every lookup agrees with the decision `want` of check_at. */
static bool handle_agrees(const entitle_engine *e, entitle_feature h, const json_value *c,
                          const entitle_decision *want, const char *how, const char *file) {
    const json_value *customer = json_get(c, "customer");
    const json_value *usage = json_get(c, "usage");
    const json_value *requested = json_get(c, "requested");
    int64_t at = 0;
    json_int64(json_get(c, "at"), &at);
    const uint8_t *cu = (const uint8_t *)customer->str;
    size_t cl = customer->str_len;
    entitle_decision d;
    bool ok = entitle_engine_feature_check_at(e, h, cu, cl, at, &d) == ENTITLE_RESULT_OK &&
              same_decision(&d, want) &&
              entitle_engine_feature_enabled_at(e, h, cu, cl, at) == want->enabled &&
              entitle_engine_feature_limit_at(e, h, cu, cl, at) ==
                  (want->feature_type == ENTITLE_FEATURE_TYPE_LIMIT ? want->value : 0);
    if (usage != NULL) {
        uint64_t u = 0, q = 1;
        json_uint64(usage, &u);
        if (requested != NULL) json_uint64(requested, &q);
        const json_value *feature = json_get(c, "feature");
        bool allowed = entitle_engine_allows_at(e, cu, cl, (const uint8_t *)feature->str,
                                                feature->str_len, u, q, at);
        ok = ok && entitle_engine_feature_allows_at(e, h, cu, cl, u, q, at) == allowed;
    }
    if (!ok) {
        const json_value *name = json_get(c, "name");
        fprintf(stderr, "FAIL %s: %s: through a handle %s\n", file,
                name && name->type == JSON_STRING ? name->str : "(unnamed)", how);
    }
    return ok;
}

/* The handle and batch paths for every case of a file (see the comment at the top). */
static void run_handle_paths(const entitle_engine *e, const json_value *catalog,
                             const json_value *cases, const char *file) {
    entitle_engine *none = NULL, *reversed = NULL;
    const char *no_features = "{\"features\":[]}";
    CHECK_RESULT(entitle_engine_from_catalog_json(STR(no_features), &none), ENTITLE_RESULT_OK);
    char *rev = reversed_features_catalog(catalog);
    CHECK(rev != NULL);
    if (rev != NULL) {
        CHECK_RESULT(entitle_engine_from_catalog_json(STR(rev), &reversed), ENTITLE_RESULT_OK);
    }
    free(rev);
    size_t n = cases->n;
    /* Every customer of the file packed end to end, and every feature's handle. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += json_get(cases->items[i], "customer")->str_len;
    uint8_t *ids = malloc(total + 1);
    size_t *ends = malloc(n * sizeof *ends);
    entitle_feature *handles = malloc(n * sizeof *handles);
    entitle_decision *out = malloc(n * sizeof *out);
    size_t at_byte = 0;
    for (size_t i = 0; i < n && ids && ends && handles; i++) {
        const json_value *cu = json_get(cases->items[i], "customer");
        memcpy(ids + at_byte, cu->str, cu->str_len);
        at_byte += cu->str_len;
        ends[i] = at_byte;
        /* Resolved before a swap: on the engine that has none of the features. */
        handles[i] = none ? resolve(none, json_get(cases->items[i], "feature")) : (entitle_feature){0};
    }
    for (size_t i = 0; i < n && ids && ends && handles && out && none && reversed; i++) {
        const json_value *c = cases->items[i];
        const json_value *customer = json_get(c, "customer");
        const json_value *feature = json_get(c, "feature");
        int64_t at = 0;
        json_int64(json_get(c, "at"), &at);
        entitle_decision want;
        if (entitle_engine_check_at(e, (const uint8_t *)customer->str, customer->str_len,
                                    (const uint8_t *)feature->str, feature->str_len, at,
                                    &want) != ENTITLE_RESULT_OK) {
            CHECKF(0, "%s: case %zu: check_at failed", file, i);
            continue;
        }
        bool ok = handle_agrees(e, resolve(e, feature), c, &want, "resolved on the engine", file);
        ok &= handle_agrees(e, handles[i], c, &want, "resolved before a swap", file);
        ok &= handle_agrees(e, resolve(reversed, feature), c, &want,
                            "resolved on reordered features", file);
        entitle_decision gone;
        ok &= entitle_engine_feature_check_at(none, resolve(e, feature),
                                              (const uint8_t *)customer->str, customer->str_len,
                                              at, &gone) == ENTITLE_RESULT_OK &&
              gone.reason == ENTITLE_REASON_FEATURE_NOT_FOUND &&
              gone.feature_type == ENTITLE_FEATURE_TYPE_UNKNOWN && !gone.enabled;

        /* This feature for every customer of the file. */
        entitle_result r = entitle_engine_check_customers_at(e, resolve(e, feature), ids, total,
                                                             ends, n, at, out);
        ok &= r == ENTITLE_RESULT_OK;
        for (size_t j = 0; j < n && r == ENTITLE_RESULT_OK; j++) {
            const json_value *cj = json_get(cases->items[j], "customer");
            entitle_decision single;
            entitle_engine_check_at(e, (const uint8_t *)cj->str, cj->str_len,
                                    (const uint8_t *)feature->str, feature->str_len, at, &single);
            if (!same_decision(&out[j], &single)) {
                fprintf(stderr, "FAIL %s: case %zu: check_customers_at differs for customer %zu\n",
                        file, i, j);
                ok = false;
            }
        }
        /* Every feature of the file (handles from before the swap) for this customer. */
        r = entitle_engine_check_features_at(e, (const uint8_t *)customer->str, customer->str_len,
                                             handles, n, at, out);
        ok &= r == ENTITLE_RESULT_OK;
        for (size_t j = 0; j < n && r == ENTITLE_RESULT_OK; j++) {
            const json_value *fj = json_get(cases->items[j], "feature");
            entitle_decision single;
            entitle_engine_check_at(e, (const uint8_t *)customer->str, customer->str_len,
                                    (const uint8_t *)fj->str, fj->str_len, at, &single);
            if (!same_decision(&out[j], &single)) {
                fprintf(stderr, "FAIL %s: case %zu: check_features_at differs for feature %zu\n",
                        file, i, j);
                ok = false;
            }
        }
        CHECKF(ok, "%s: case %zu through handles and batches", file, i);
    }
    free(ids);
    free(ends);
    free(handles);
    free(out);
    entitle_engine_free(none);
    entitle_engine_free(reversed);
}

static void run_valid(const char *path, const char *file) {
    char *text = NULL;
    json_value *doc = load_json(path, &text);
    const json_value *catalog = json_get(doc, "catalog");
    const json_value *cases = json_get(doc, "cases");
    if (catalog == NULL || cases == NULL || cases->type != JSON_ARRAY) {
        CHECKF(doc == NULL, "%s: no catalog or cases", file);
    } else {
        entitle_engine *e = NULL;
        entitle_result r =
            entitle_engine_from_catalog_json((const uint8_t *)catalog->raw, catalog->raw_len, &e);
        CHECKF(r == ENTITLE_RESULT_OK, "%s: catalog should load: %s: %s", file,
               entitle_result_message(r), last_error());
        if (e != NULL) {
            CHECKF(cases->n > 0, "%s: no cases", file);
            for (size_t i = 0; i < cases->n; i++) {
                CHECKF(run_case(e, file, cases->items[i]), "%s: case %zu", file, i);
            }
            run_handle_paths(e, catalog, cases, file);
            entitle_engine_free(e);
        }
    }
    json_free(doc);
    free(text);
}

static void run_invalid(const char *path, const char *file) {
    char *text = NULL;
    json_value *doc = load_json(path, &text);
    const json_value *catalog = json_get(doc, "catalog");
    const json_value *want = json_get(doc, "expect_error");
    if (catalog == NULL || want == NULL || want->type != JSON_STRING) {
        CHECKF(doc == NULL, "invalid/%s: no catalog or expect_error", file);
    } else {
        entitle_engine *e = NULL;
        entitle_result r =
            entitle_engine_from_catalog_json((const uint8_t *)catalog->raw, catalog->raw_len, &e);
        const char *detail = last_error();
        bool prefix = strncmp(detail, want->str, want->str_len) == 0 &&
                      detail[want->str_len] == ':';
        CHECKF(r == ENTITLE_RESULT_INVALID_CATALOG && e == NULL && prefix,
               "invalid/%s: got %s (%s), want an error at %s", file, entitle_result_message(r),
               detail, want->str);
        entitle_engine_free(e);
    }
    json_free(doc);
    free(text);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFORMANCE_DIR\n", argv[0]);
        return 2;
    }
    char path[8192];
    char dir[4096];
    size_t count = 0;
    char **names = json_files(argv[1], &count);
    CHECKF(count > 0, "no conformance files in %s", argv[1]);
    for (size_t i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        run_valid(path, names[i]);
    }
    free_names(names, count);

    snprintf(dir, sizeof dir, "%s/invalid", argv[1]);
    names = json_files(dir, &count);
    CHECKF(count > 0, "no invalid conformance files in %s", dir);
    for (size_t i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        run_invalid(path, names[i]);
    }
    free_names(names, count);
    return report("ffi-conformance");
}
