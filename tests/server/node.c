/*
 * mongoq-test-server: a small mutable document tree (ms_node_t) that updates and projections
 * edit before writing BSON back: documents keep their field order, arrays their elements,
 * scalars an owned value.
 */
#include "lang-private.h"

#include <string.h>

ms_node_t *
ms__node_new(bson_type_t container)
{
    ms_node_t *n = bson_malloc0(sizeof *n);
    n->type = container;
    n->value.value_type = container;
    return n;
}

static bool
is_container(bson_type_t t)
{
    return t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY;
}

static void
node_fill(ms_node_t *n, const uint8_t *data, uint32_t len)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        ms__node_push(n, k, strlen(k), ms__node_from_value(bson_iter_value(&it)));
    }
}

ms_node_t *
ms__node_from_value(const bson_value_t *v)
{
    if (is_container(v->value_type)) {
        ms_node_t *n = ms__node_new(v->value_type);
        node_fill(n, v->value.v_doc.data, v->value.v_doc.data_len);
        return n;
    }
    ms_node_t *n = bson_malloc0(sizeof *n);
    n->type = v->value_type;
    bson_value_copy(v, &n->value);
    return n;
}

ms_node_t *
ms__node_from_bson(const bson_t *doc)
{
    ms_node_t *n = ms__node_new(BSON_TYPE_DOCUMENT);
    node_fill(n, bson_get_data(doc), doc->len);
    return n;
}

ms_node_t *
ms__node_copy(const ms_node_t *src)
{
    if (!is_container(src->type)) {
        return ms__node_from_value(&src->value);
    }
    ms_node_t *n = ms__node_new(src->type);
    for (size_t i = 0; i < src->len; i++) {
        const char *k = src->keys ? src->keys[i] : "";
        ms__node_push(n, k, strlen(k), ms__node_copy(src->kids[i]));
    }
    return n;
}

void
ms__node_destroy(ms_node_t *n)
{
    if (!n) {
        return;
    }
    if (is_container(n->type)) {
        for (size_t i = 0; i < n->len; i++) {
            ms__node_destroy(n->kids[i]);
            if (n->keys) {
                bson_free(n->keys[i]);
            }
        }
        bson_free(n->keys);
        bson_free(n->kids);
    } else {
        bson_value_destroy(&n->value);
    }
    bson_free(n);
}

static void
append_children(bson_t *dst, const ms_node_t *n)
{
    char buf[16];
    for (size_t i = 0; i < n->len; i++) {
        const char *key = n->keys ? n->keys[i] : NULL;
        if (n->type == BSON_TYPE_ARRAY) {
            bson_uint32_to_string((uint32_t)i, &key, buf, sizeof buf);
        }
        ms__node_append_to(dst, key, n->kids[i]);
    }
}

void
ms__node_append_to(bson_t *dst, const char *key, const ms_node_t *n)
{
    bson_t child;
    if (n->type == BSON_TYPE_DOCUMENT) {
        bson_append_document_begin(dst, key, -1, &child);
        append_children(&child, n);
        bson_append_document_end(dst, &child);
    } else if (n->type == BSON_TYPE_ARRAY) {
        bson_append_array_begin(dst, key, -1, &child);
        append_children(&child, n);
        bson_append_array_end(dst, &child);
    } else {
        bson_append_value(dst, key, -1, &n->value);
    }
}

void
ms__node_to_bson(const ms_node_t *doc, bson_t *out)
{
    bson_init(out);
    append_children(out, doc);
}

void
ms__node_to_value(const ms_node_t *n, bson_value_t *out)
{
    if (!is_container(n->type)) {
        bson_value_copy(&n->value, out);
        return;
    }
    bson_t tmp = BSON_INITIALIZER;
    append_children(&tmp, n);
    ms__value_from_bson(&tmp, n->type == BSON_TYPE_ARRAY, out);
    bson_destroy(&tmp);
}

long
ms__node_find(const ms_node_t *n, const char *key, size_t keylen)
{
    if (n->type == BSON_TYPE_ARRAY) {
        uint32_t idx;
        if (ms__is_index(key, keylen, &idx) && idx < n->len) {
            return (long)idx;
        }
        return -1;
    }
    if (n->type != BSON_TYPE_DOCUMENT) {
        return -1;
    }
    for (size_t i = 0; i < n->len; i++) {
        if (strncmp(n->keys[i], key, keylen) == 0 && n->keys[i][keylen] == '\0') {
            return (long)i;
        }
    }
    return -1;
}

void
ms__node_push(ms_node_t *n, const char *key, size_t keylen, ms_node_t *val)
{
    if (n->len == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 4;
        n->kids = bson_realloc(n->kids, n->cap * sizeof *n->kids);
        if (n->type == BSON_TYPE_DOCUMENT) {
            n->keys = bson_realloc(n->keys, n->cap * sizeof *n->keys);
        }
    }
    if (n->type == BSON_TYPE_DOCUMENT) {
        n->keys[n->len] = bson_strndup(key, keylen);
    }
    n->kids[n->len++] = val;
}

void
ms__node_put(ms_node_t *doc, const char *key, size_t keylen, ms_node_t *val)
{
    long i = ms__node_find(doc, key, keylen);
    if (i >= 0) {
        ms__node_destroy(doc->kids[i]);
        doc->kids[i] = val;
        return;
    }
    ms__node_push(doc, key, keylen, val);
}

void
ms__node_remove_at(ms_node_t *n, size_t i)
{
    ms__node_destroy(n->kids[i]);
    if (n->keys) {
        bson_free(n->keys[i]);
        memmove(n->keys + i, n->keys + i + 1, (n->len - i - 1) * sizeof *n->keys);
    }
    memmove(n->kids + i, n->kids + i + 1, (n->len - i - 1) * sizeof *n->kids);
    n->len--;
}

void
ms__node_move_first(ms_node_t *n, size_t i)
{
    if (i == 0 || i >= n->len) {
        return;
    }
    ms_node_t *kid = n->kids[i];
    memmove(n->kids + 1, n->kids, i * sizeof *n->kids);
    n->kids[0] = kid;
    if (n->keys) {
        char *key = n->keys[i];
        memmove(n->keys + 1, n->keys, i * sizeof *n->keys);
        n->keys[0] = key;
    }
}

int
ms__node_cmp(const ms_node_t *a, const ms_node_t *b)
{
    if (!is_container(a->type) && !is_container(b->type)) {
        return ms_value_cmp(&a->value, &b->value);
    }
    bson_value_t va, vb;
    ms__node_to_value(a, &va);
    ms__node_to_value(b, &vb);
    int r = ms_value_cmp(&va, &vb);
    bson_value_destroy(&va);
    bson_value_destroy(&vb);
    return r;
}
