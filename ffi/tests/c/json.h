/*
 * A small JSON reader for the C tests: enough to read the conformance suite losslessly.
 *
 * Every value keeps its exact source text (raw, raw_len), so a runner can hand the engine the
 * catalog's bytes untouched. Strings are decoded to UTF-8 (with \u escapes and surrogate pairs);
 * integers are kept exactly (sign + 64-bit magnitude); other numbers only as raw text.
 */
#ifndef ENTITLE_TEST_JSON_H
#define ENTITLE_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value {
    json_type type;
    const char *raw; /* the value's exact source text (not NUL-terminated) */
    size_t raw_len;
    bool boolean;
    /* JSON_NUMBER: is_integer when the text is an integer that fits in 64 bits of magnitude. */
    bool is_integer;
    bool negative;
    uint64_t magnitude;
    /* JSON_STRING: decoded UTF-8, NUL-terminated for convenience (may contain NUL: use str_len). */
    char *str;
    size_t str_len;
    /* JSON_ARRAY / JSON_OBJECT: n items; keys (decoded, NUL-terminated) for objects. */
    size_t n;
    struct json_value **items;
    char **keys;
    size_t *key_lens;
} json_value;

/* Parses text[0..len). Returns NULL on a syntax error and writes a message into err. */
json_value *json_parse(const char *text, size_t len, char *err, size_t err_len);

/* Frees a value returned by json_parse (NULL is a no-op). */
void json_free(json_value *v);

/* The member `key` of an object, or NULL (also when v is not an object). */
const json_value *json_get(const json_value *v, const char *key);

/* Whether v is an integer in int64_t range; stores it in *out. */
bool json_int64(const json_value *v, int64_t *out);

/* Whether v is a non-negative integer that fits uint64_t; stores it in *out. */
bool json_uint64(const json_value *v, uint64_t *out);

/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL on failure. */
char *read_file(const char *path, size_t *len);

#endif
