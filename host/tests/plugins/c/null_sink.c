/*
 * A sink plugin written in C against egress_plugin.h: counts bytes and discards them.
 * It proves that the header describes what the Rust side exports, and the compile-time knobs
 * below build the broken variants the loader must refuse:
 *   -DABI_MAJOR=n / -DABI_MINOR=n   declare another ABI version
 *   -DNO_WRITE                      leave the `write` entry NULL
 *   -DNO_ENTRY                      do not export egress_plugin_entry_v1 at all
 *   -DV1_0_DESCRIPTOR               fill only a v1.0 descriptor (no `renderer` field), as a
 *                                   plugin built against header 1.0 does (use with ABI_MINOR=0)
 *   -DV1_1_DESCRIPTOR               fill only a v1.1 descriptor (no `live` field), as a plugin
 *                                   built against header 1.1 does (use with ABI_MINOR=1)
 */
#include <stdlib.h>
#include <string.h>

#include "egress_plugin.h"

#ifndef ABI_MAJOR
#define ABI_MAJOR EGRESS_PLUGIN_ABI_MAJOR
#endif
#ifndef ABI_MINOR
#define ABI_MINOR EGRESS_PLUGIN_ABI_MINOR
#endif

static const EgressHostApi *host;

static EgressBuf buf_from(const char *s) {
    size_t n = strlen(s);
    EgressBuf b = {(uint8_t *)malloc(n), n, n};
    memcpy(b.ptr, s, n);
    return b;
}

static int32_t fail(EgressError *err, int32_t kind, const char *message, const char *field) {
    if (err) {
        err->message = buf_from(message);
        if (field) err->field = buf_from(field);
    }
    return kind;
}

static void c_init(const EgressHostApi *h) { host = h; }

static int32_t c_describe(EgressBuf *out, EgressError *err) {
    (void)err;
    *out = buf_from("{\"name\":\"c-null\",\"version\":\"0.0.1\","
                    "\"capabilities\":{\"streaming\":true},"
                    "\"config_schema\":{\"type\":\"object\",\"properties\":"
                    "{\"sig\":{\"type\":\"string\",\"writeOnly\":true}}}}");
    return EGRESS_OK;
}

/* Accepts any config but one containing "reject". */
static int32_t c_validate(EgressStr config, EgressError *err) {
    const char *needle = "reject";
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= config.len; i++) {
        if (memcmp(config.ptr + i, needle, n) == 0)
            return fail(err, EGRESS_ERR_CONFIG, "rejected as asked", "mode");
    }
    return EGRESS_OK;
}

typedef struct Factory { int unused; } Factory;
typedef struct Object { uint64_t size; } Object;

static int32_t c_create(EgressStr config, void **out, EgressError *err) {
    int32_t status = c_validate(config, err);
    if (status != EGRESS_OK) return status;
    *out = calloc(1, sizeof(Factory));
    return EGRESS_OK;
}

static int32_t c_health(void *factory, EgressError *err) {
    (void)factory;
    (void)err;
    return EGRESS_OK;
}

static int32_t c_open(void *factory, const EgressObjectSpec *spec, void **out, EgressError *err) {
    (void)factory;
    if (spec->struct_size < sizeof(EgressObjectSpec))
        return fail(err, EGRESS_ERR_PERMANENT, "spec too small", NULL);
    if (host && host->log) {
        const char *m = "c-null: opening an object";
        EgressStr s = {(const uint8_t *)m, strlen(m)};
        host->log(EGRESS_LOG_INFO, s);
    }
    *out = calloc(1, sizeof(Object));
    return EGRESS_OK;
}

#ifndef NO_WRITE
static int32_t c_write(void *object, EgressStr chunk, EgressError *err) {
    (void)err;
    ((Object *)object)->size += chunk.len;
    return EGRESS_OK;
}
#endif

static int32_t c_finish(void *object, EgressReceipt *out, EgressError *err) {
    (void)err;
    Object *o = object;
    out->location = buf_from("null:");
    out->size = o->size;
    memset(out->sha256, 0, sizeof out->sha256);
    free(o);
    return EGRESS_OK;
}

static void c_abort(void *object) { free(object); }
static void c_destroy(void *factory) { free(factory); }
static void c_free_buf(EgressBuf buf) { free(buf.ptr); }

static const EgressSinkApi SINK = {
    sizeof(EgressSinkApi), c_init, c_describe, c_validate, c_create, c_health, c_open,
#ifdef NO_WRITE
    NULL,
#else
    c_write,
#endif
    c_finish, c_abort, c_destroy, c_free_buf,
};

#ifdef V1_0_DESCRIPTOR
#define DESCRIPTOR_SIZE offsetof(EgressPluginDescriptor, renderer)
#elif defined(V1_1_DESCRIPTOR)
#define DESCRIPTOR_SIZE offsetof(EgressPluginDescriptor, live)
#else
#define DESCRIPTOR_SIZE sizeof(EgressPluginDescriptor)
#endif

static const EgressPluginDescriptor DESCRIPTOR = {
    DESCRIPTOR_SIZE, ABI_MAJOR, ABI_MINOR, &SINK, NULL,
};

#ifndef NO_ENTRY
const EgressPluginDescriptor *egress_plugin_entry_v1(void) { return &DESCRIPTOR; }
#else
const EgressPluginDescriptor *some_other_symbol(void) { return &DESCRIPTOR; }
#endif
