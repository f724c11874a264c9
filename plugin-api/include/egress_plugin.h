/*
 * egress_plugin.h: the C projection of the egress plugin API, version 1.2.
 *
 * The Rust crate `egress-plugin-api` is the source of truth; this header mirrors its `abi`
 * module. `plugin-api/tests/abi_golden.rs` hashes this file, so every change is deliberate.
 *
 * A dynamic-library plugin exports one symbol, `egress_plugin_entry_v1`, returning a pointer to
 * a static descriptor. The host refuses a plugin whose `abi_major` differs from its own or whose
 * `abi_minor` is newer than its own. Minor versions only append fields to the structs below;
 * every struct starts with its size so that the host never reads past what the plugin filled.
 *
 * History: 1.0 sinks. 1.1 appends `renderer` to the descriptor (a layout renderer table); a
 * plugin may offer a sink, a renderer or both, and a host of 1.1 still loads 1.0 plugins.
 * 1.2 appends `live` (a live destination table: RTMP, SRT, ...); the host reads it only from a
 * descriptor of minor 2 or newer whose `struct_size` covers it, so 1.0 and 1.1 plugins load
 * unchanged.
 *
 * Threading: factory functions may be called concurrently from any thread. An object's
 * functions are never called concurrently (one call at a time), possibly from different threads.
 * Calls block; the host runs them off its async executor.
 *
 * Ownership: strings passed to the plugin (EgressStr) are borrowed for the duration of the call.
 * Buffers returned by the plugin (EgressBuf) are owned by the plugin and released by the host
 * with `free_buf`. `finish` and `abort` consume the object, whatever they return (`close` and
 * `abort` a live session). The host
 * destroys a factory only after every object it opened is finished or aborted, and never
 * unloads the library.
 *
 * Errors: functions return EGRESS_OK or one of the EGRESS_ERR_* kinds and, on error, fill
 * `err` (message, and for config errors the dotted path of the field). A plugin must not let a
 * panic or exception cross these functions; Rust plugins built with `export_sink!` catch
 * panics and report them as EGRESS_ERR_PERMANENT.
 */
#ifndef EGRESS_PLUGIN_H
#define EGRESS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EGRESS_PLUGIN_ABI_MAJOR 1
#define EGRESS_PLUGIN_ABI_MINOR 2
#define EGRESS_PLUGIN_ENTRY_SYMBOL "egress_plugin_entry_v1"

/* Status codes, also the error kinds. */
#define EGRESS_OK 0
#define EGRESS_ERR_RETRYABLE 1 /* transient: timeouts, 5xx, connection resets */
#define EGRESS_ERR_PERMANENT 2 /* will fail again: bad request, invalid key */
#define EGRESS_ERR_AUTH 3      /* credentials missing, wrong or without permission */
#define EGRESS_ERR_CONFIG 4    /* invalid config; `field` names the key */

/* Log levels for EgressHostApi.log. */
#define EGRESS_LOG_TRACE 0
#define EGRESS_LOG_DEBUG 1
#define EGRESS_LOG_INFO 2
#define EGRESS_LOG_WARN 3
#define EGRESS_LOG_ERROR 4

/* Borrowed bytes (UTF-8 for strings, not NUL-terminated). */
typedef struct EgressStr {
    const uint8_t *ptr;
    size_t len;
} EgressStr;

/* Bytes owned by the plugin; the host releases them with `free_buf`. */
typedef struct EgressBuf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} EgressBuf;

/* Filled by the plugin when a function fails. Both buffers may be empty (ptr NULL). */
typedef struct EgressError {
    EgressBuf message;
    EgressBuf field;
} EgressError;

typedef struct EgressObjectSpec {
    uint32_t struct_size;
    EgressStr key;
    EgressStr content_type;
    uint8_t has_expected_size;
    uint64_t expected_size;
} EgressObjectSpec;

/* Filled by `finish`; `location` is owned by the plugin. */
typedef struct EgressReceipt {
    EgressBuf location;
    uint64_t size;
    uint8_t sha256[32];
} EgressReceipt;

/* Services the host offers to the plugin, passed to `init` once after loading. */
typedef struct EgressHostApi {
    uint32_t struct_size;
    void (*log)(uint32_t level, EgressStr message);
} EgressHostApi;

typedef struct EgressSinkApi {
    uint32_t struct_size;
    /* Called once, before anything else. `host` lives as long as the process. */
    void (*init)(const EgressHostApi *host);
    /* JSON: {"name", "version", "capabilities": {"streaming", "needs_local_file", "live"},
       "config_schema"}. */
    int32_t (*describe)(EgressBuf *out_json, EgressError *err);
    /* Check a JSON config without side effects. */
    int32_t (*validate)(EgressStr config_json, EgressError *err);
    /* Build a configured factory from a JSON config that passed `validate`; no I/O. */
    int32_t (*create)(EgressStr config_json, void **out_factory, EgressError *err);
    int32_t (*health_check)(void *factory, EgressError *err);
    int32_t (*open)(void *factory, const EgressObjectSpec *spec, void **out_object,
                    EgressError *err);
    /* Append `chunk` to the object; blocking here is the backpressure. */
    int32_t (*write)(void *object, EgressStr chunk, EgressError *err);
    /* Make the object durable; consumes `object` even on error. */
    int32_t (*finish)(void *object, EgressReceipt *out, EgressError *err);
    /* Discard the object; consumes `object`. */
    void (*abort)(void *object);
    void (*destroy)(void *factory);
    void (*free_buf)(EgressBuf buf);
} EgressSinkApi;

/* Since 1.1. A layout renderer: turns a request's layout into the page the browser records.
 * Requests, rooms and answers are JSON (they are nested lists; JSON objects gain fields in a
 * minor version without a layout change). Renderer functions may be called concurrently. */
typedef struct EgressRendererApi {
    uint32_t struct_size;
    /* Called once, before anything else (the same as the sink's; called once per table). */
    void (*init)(const EgressHostApi *host);
    /* JSON: {"name", "version", "config_schema"}. */
    int32_t (*describe)(EgressBuf *out_json, EgressError *err);
    /* Check a JSON config without side effects. */
    int32_t (*validate)(EgressStr config_json, EgressError *err);
    /* Build a renderer from a JSON config that passed `validate`; no I/O. */
    int32_t (*create)(EgressStr config_json, void **out_renderer, EgressError *err);
    /* JSON array of the layout names this renderer answers: ["solid-red", ...]. */
    int32_t (*layouts)(void *renderer, EgressBuf *out_json, EgressError *err);
    /* request_json: {"layout", "width", "height", "audio_only", "video_only",
         "custom_base_url", "template_base", "options"};
       room_json: {"room_name", "participants": [{"identity", "name", "metadata",
         "tracks": [{"id", "kind": "audio"|"video"|"screen_share", "muted", "width",
         "height"}]}], "active_speaker"};
       out_json: {"page_url": "https://..."} or {"tiles": [{"x", "y", "w", "h", "z",
         "track_id"}]}. */
    int32_t (*render)(void *renderer, EgressStr request_json, EgressStr room_json,
                      EgressBuf *out_json, EgressError *err);
    void (*destroy)(void *renderer);
    void (*free_buf)(EgressBuf buf);
} EgressRendererApi;

/* Since 1.2. One chunk of a live stream, borrowed for the duration of `send`. For the "flv"
 * format: one FLV tag (11-byte tag header + body, no PreviousTagSize); for "mpegts": whole
 * 188-byte TS packets. The first chunks of every session are the stream headers (`header` = 1:
 * onMetaData, AVC and AAC sequence headers; or PAT/PMT), then media from a keyframe. */
typedef struct EgressLiveChunk {
    uint32_t struct_size;
    EgressStr data;
    uint64_t pts_ns;  /* presentation time from the session's first chunk */
    uint8_t keyframe; /* 1: starts a video keyframe */
    uint8_t header;   /* 1: stream headers, resent on every connect */
} EgressLiveChunk;

/* Since 1.2. A live destination: the transport of a stream output. The host muxes, reconnects
 * (with backoff; one `connect` is one attempt), gates on keyframes and reports status; the
 * plugin connects, publishes, sends and closes. Error kinds: RETRYABLE for refused, reset,
 * closed by the peer, timeouts; PERMANENT for a TLS certificate rejected and a DNS name that
 * does not exist; AUTH for a publish refused (stream key, SRT passphrase or streamid);
 * CONFIG for an unusable URL. Factory functions may be called concurrently; a session's
 * functions one at a time (`bytes_sent` included). */
typedef struct EgressLiveApi {
    uint32_t struct_size;
    /* Called once, before anything else (the same as the sink's; called once per table). */
    void (*init)(const EgressHostApi *host);
    /* JSON: {"name", "version", "schemes": ["rtmp", ...], "format": "flv"|"mpegts",
       "config_schema"}. */
    int32_t (*describe)(EgressBuf *out_json, EgressError *err);
    /* Check a JSON config without side effects. */
    int32_t (*validate)(EgressStr config_json, EgressError *err);
    /* Build a configured factory from a JSON config that passed `validate`; no I/O. */
    int32_t (*create)(EgressStr config_json, void **out_factory, EgressError *err);
    /* Check a stream URL without I/O (CONFIG errors). */
    int32_t (*validate_url)(void *factory, EgressStr url, EgressError *err);
    /* Connect and publish; returns once the destination accepted the publish. */
    int32_t (*connect)(void *factory, EgressStr url, void **out_session, EgressError *err);
    /* Send one chunk; blocking here is the backpressure. */
    int32_t (*send)(void *session, const EgressLiveChunk *chunk, EgressError *err);
    /* Bytes sent in this session so far; must not block. */
    uint64_t (*bytes_sent)(void *session);
    /* End the publish cleanly; consumes `session` even on error. */
    int32_t (*close)(void *session, EgressError *err);
    /* Drop the connection at once; consumes `session`. */
    void (*abort)(void *session);
    void (*destroy)(void *factory);
    void (*free_buf)(EgressBuf buf);
} EgressLiveApi;

typedef struct EgressPluginDescriptor {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    /* The sink table; since 1.1 it may be NULL when another table is set. */
    const EgressSinkApi *sink;
    /* Since 1.1: the renderer table, or NULL. */
    const EgressRendererApi *renderer;
    /* Since 1.2: the live destination table, or NULL. */
    const EgressLiveApi *live;
} EgressPluginDescriptor;

/* The one exported symbol. Returns a pointer to a descriptor with static lifetime. */
const EgressPluginDescriptor *egress_plugin_entry_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* EGRESS_PLUGIN_H */
