/* A small recursive-descent JSON reader for the C tests (see json.h). */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200

typedef struct {
    const char *text;
    size_t len;
    size_t pos;
    char *err;
    size_t err_len;
    bool failed;
} parser;

static void fail(parser *p, const char *what) {
    if (!p->failed) {
        snprintf(p->err, p->err_len, "JSON error at byte %zu: %s", p->pos, what);
        p->failed = true;
    }
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        p->pos++;
    }
}

static json_value *new_value(json_type type, size_t start, parser *p) {
    json_value *v = calloc(1, sizeof *v);
    if (v == NULL) {
        fail(p, "out of memory");
        return NULL;
    }
    v->type = type;
    v->raw = p->text + start;
    return v;
}

static bool literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) {
        fail(p, "invalid literal");
        return false;
    }
    p->pos += n;
    return true;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, uint32_t *out) {
    if (p->len - p->pos < 4) {
        fail(p, "truncated \\u escape");
        return false;
    }
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p->text[p->pos + i]);
        if (d < 0) {
            fail(p, "invalid \\u escape");
            return false;
        }
        v = v * 16 + (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *dst, uint32_t cp) {
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads a string at p->pos (the opening quote); the decoded text is malloc'd into *out. */
static bool read_string(parser *p, char **out, size_t *out_len) {
    p->pos++; /* opening quote */
    /* Decoded text is never longer than the source text. */
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->text[end] != '"') {
        end += p->text[end] == '\\' ? 2 : 1;
    }
    if (end >= p->len) {
        fail(p, "unterminated string");
        return false;
    }
    char *buf = malloc(end - start + 1);
    if (buf == NULL) {
        fail(p, "out of memory");
        return false;
    }
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) {
            fail(p, "control character in string");
            free(buf);
            return false;
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            p->pos++;
            continue;
        }
        char e = p->text[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(p, &cp)) {
                free(buf);
                return false;
            }
            if (cp >= 0xD800 && cp < 0xDC00 && end - p->pos >= 6 && p->text[p->pos] == '\\' &&
                p->text[p->pos + 1] == 'u') {
                size_t save = p->pos;
                uint32_t lo;
                p->pos += 2;
                if (read_hex4(p, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    p->pos = save;
                }
            }
            /* A \uXXXX escape takes 6 source bytes and at most 3 output bytes (4 for a pair of
             * 12 source bytes), so the buffer is large enough. */
            n += put_utf8(buf + n, cp);
            break;
        }
        default:
            fail(p, "invalid escape");
            free(buf);
            return false;
        }
    }
    p->pos = end + 1;
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return true;
}

static json_value *parse_value(parser *p, int depth);

static bool push_item(parser *p, json_value *v, json_value *item, char *key, size_t key_len) {
    json_value **items = realloc(v->items, (v->n + 1) * sizeof *items);
    if (items == NULL) {
        fail(p, "out of memory");
        return false;
    }
    v->items = items;
    if (v->type == JSON_OBJECT) {
        char **keys = realloc(v->keys, (v->n + 1) * sizeof *keys);
        if (keys == NULL) {
            fail(p, "out of memory");
            return false;
        }
        v->keys = keys;
        size_t *lens = realloc(v->key_lens, (v->n + 1) * sizeof *lens);
        if (lens == NULL) {
            fail(p, "out of memory");
            return false;
        }
        v->key_lens = lens;
        v->keys[v->n] = key;
        v->key_lens[v->n] = key_len;
    }
    v->items[v->n++] = item;
    return true;
}

static void parse_number(parser *p, json_value *v) {
    if (p->text[p->pos] == '-') {
        v->negative = true;
        p->pos++;
    }
    size_t digits = p->pos;
    bool overflow = false;
    uint64_t m = 0;
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
        uint64_t d = (uint64_t)(p->text[p->pos] - '0');
        if (m > (UINT64_MAX - d) / 10) {
            overflow = true;
        }
        m = m * 10 + d;
        p->pos++;
    }
    if (p->pos == digits) {
        fail(p, "invalid number");
        return;
    }
    bool integer = !overflow;
    if (p->pos < p->len && p->text[p->pos] == '.') {
        integer = false;
        p->pos++;
        while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (p->text[p->pos] == 'e' || p->text[p->pos] == 'E')) {
        integer = false;
        p->pos++;
        if (p->pos < p->len && (p->text[p->pos] == '+' || p->text[p->pos] == '-')) p->pos++;
        while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
    }
    v->is_integer = integer;
    v->magnitude = integer ? m : 0;
}

static json_value *parse_value(parser *p, int depth) {
    if (depth > MAX_DEPTH) {
        fail(p, "nested too deeply");
        return NULL;
    }
    skip_ws(p);
    if (p->pos >= p->len) {
        fail(p, "unexpected end of input");
        return NULL;
    }
    size_t start = p->pos;
    char c = p->text[p->pos];
    json_value *v = NULL;
    if (c == 'n') {
        v = new_value(JSON_NULL, start, p);
        if (v) literal(p, "null");
    } else if (c == 't' || c == 'f') {
        v = new_value(JSON_BOOL, start, p);
        if (v) {
            v->boolean = c == 't';
            literal(p, c == 't' ? "true" : "false");
        }
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = new_value(JSON_NUMBER, start, p);
        if (v) parse_number(p, v);
    } else if (c == '"') {
        v = new_value(JSON_STRING, start, p);
        if (v) read_string(p, &v->str, &v->str_len);
    } else if (c == '[' || c == '{') {
        bool object = c == '{';
        char close = object ? '}' : ']';
        v = new_value(object ? JSON_OBJECT : JSON_ARRAY, start, p);
        if (v == NULL) return NULL;
        p->pos++;
        skip_ws(p);
        if (p->pos < p->len && p->text[p->pos] == close) {
            p->pos++;
        } else {
            while (!p->failed) {
                char *key = NULL;
                size_t key_len = 0;
                if (object) {
                    skip_ws(p);
                    if (p->pos >= p->len || p->text[p->pos] != '"') {
                        fail(p, "expected a string key");
                        break;
                    }
                    if (!read_string(p, &key, &key_len)) break;
                    skip_ws(p);
                    if (p->pos >= p->len || p->text[p->pos] != ':') {
                        free(key);
                        fail(p, "expected ':'");
                        break;
                    }
                    p->pos++;
                }
                json_value *item = parse_value(p, depth + 1);
                if (item == NULL || !push_item(p, v, item, key, key_len)) {
                    json_free(item);
                    free(key);
                    break;
                }
                skip_ws(p);
                if (p->pos < p->len && p->text[p->pos] == ',') {
                    p->pos++;
                    continue;
                }
                if (p->pos < p->len && p->text[p->pos] == close) {
                    p->pos++;
                    break;
                }
                fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
            }
        }
    } else {
        fail(p, "unexpected character");
    }
    if (v != NULL) {
        v->raw_len = p->pos - start;
    }
    if (p->failed) {
        json_free(v);
        return NULL;
    }
    return v;
}

json_value *json_parse(const char *text, size_t len, char *err, size_t err_len) {
    parser p = {text, len, 0, err, err_len, false};
    json_value *v = parse_value(&p, 0);
    if (v == NULL) return NULL;
    skip_ws(&p);
    if (p.pos != len) {
        fail(&p, "trailing characters");
        json_free(v);
        return NULL;
    }
    return v;
}

void json_free(json_value *v) {
    if (v == NULL) return;
    for (size_t i = 0; i < v->n; i++) {
        json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    free(v);
}

const json_value *json_get(const json_value *v, const char *key) {
    if (v == NULL || v->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < v->n; i++) {
        if (v->key_lens[i] == n && memcmp(v->keys[i], key, n) == 0) return v->items[i];
    }
    return NULL;
}

bool json_int64(const json_value *v, int64_t *out) {
    if (v == NULL || v->type != JSON_NUMBER || !v->is_integer) return false;
    if (v->negative) {
        if (v->magnitude > (uint64_t)INT64_MAX + 1) return false;
        *out = v->magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v->magnitude;
    } else {
        if (v->magnitude > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->magnitude;
    }
    return true;
}

bool json_uint64(const json_value *v, uint64_t *out) {
    if (v == NULL || v->type != JSON_NUMBER || !v->is_integer) return false;
    if (v->negative && v->magnitude != 0) return false;
    *out = v->magnitude;
    return true;
}

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    for (;;) {
        if (cap - n < 4096) {
            size_t next = cap ? cap * 2 : 65536;
            char *grown = realloc(buf, next + 1);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
            cap = next;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
