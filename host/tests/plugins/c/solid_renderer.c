/*
 * A layout renderer written in C against egress_plugin.h (ABI 1.1): layout `c-solid` answered
 * with a fixed page. Proves the header's renderer table matches the Rust side, and builds the
 * variants the loader must handle:
 *   -DABI_MINOR=n   declare another ABI minor (0: a 1.0 plugin, whose descriptor has no
 *                   `renderer` field, so the host must not read it)
 *   -DNO_RENDER     leave the `render` entry NULL
 */
#include <stdlib.h>
#include <string.h>

#include "egress_plugin.h"

#ifndef ABI_MINOR
#define ABI_MINOR EGRESS_PLUGIN_ABI_MINOR
#endif

static EgressBuf buf_from(const char *s) {
    size_t n = strlen(s);
    EgressBuf b = {(uint8_t *)malloc(n), n, n};
    memcpy(b.ptr, s, n);
    return b;
}

static void c_init(const EgressHostApi *h) { (void)h; }

static int32_t c_describe(EgressBuf *out, EgressError *err) {
    (void)err;
    *out = buf_from("{\"name\":\"c-solid\",\"version\":\"0.0.1\"}");
    return EGRESS_OK;
}

static int32_t c_validate(EgressStr config, EgressError *err) {
    (void)config;
    (void)err;
    return EGRESS_OK;
}

static int renderer_token;

static int32_t c_create(EgressStr config, void **out, EgressError *err) {
    (void)config;
    (void)err;
    *out = &renderer_token;
    return EGRESS_OK;
}

static int32_t c_layouts(void *r, EgressBuf *out, EgressError *err) {
    (void)r;
    (void)err;
    *out = buf_from("[\"c-solid\"]");
    return EGRESS_OK;
}

#ifndef NO_RENDER
static int32_t c_render(void *r, EgressStr request, EgressStr room, EgressBuf *out,
                        EgressError *err) {
    (void)r;
    (void)room;
    (void)err;
    /* Crude but enough for a test: echo whether the request JSON names our layout. */
    const char *needle = "\"layout\":\"c-solid\"";
    size_t n = strlen(needle);
    int found = 0;
    for (size_t i = 0; i + n <= request.len; i++) {
        if (memcmp(request.ptr + i, needle, n) == 0) found = 1;
    }
    *out = buf_from(found ? "{\"page_url\":\"http://127.0.0.1:9/c-solid\"}"
                          : "{\"tiles\":[]}");
    return EGRESS_OK;
}
#endif

static void c_destroy(void *r) { (void)r; }
static void c_free_buf(EgressBuf buf) { free(buf.ptr); }

static const EgressRendererApi RENDERER = {
    sizeof(EgressRendererApi), c_init, c_describe, c_validate, c_create, c_layouts,
#ifdef NO_RENDER
    NULL,
#else
    c_render,
#endif
    c_destroy, c_free_buf,
};

static const EgressPluginDescriptor DESCRIPTOR = {
    sizeof(EgressPluginDescriptor), EGRESS_PLUGIN_ABI_MAJOR, ABI_MINOR, NULL, &RENDERER,
};

const EgressPluginDescriptor *egress_plugin_entry_v1(void) { return &DESCRIPTOR; }
