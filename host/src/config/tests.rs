use std::collections::HashMap;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "
api_key: key
api_secret: shh
ws_url: ws://localhost:7880
redis:
  address: localhost:6379
";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn ok(yaml: &str) -> Loaded {
    match parse(yaml, &EmptyEnv) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn ok_with(yaml: &str, env: &dyn Env) -> Loaded {
    match parse(yaml, env) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml, &EmptyEnv) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.messages(),
    }
}

fn warnings(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(ToString::to_string).collect()
}

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn defaults_match_go() {
    let loaded = ok(MINIMAL);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.api_key, "key");
    assert_eq!(c.api_secret.expose(), "shh");
    assert_eq!(c.ws_url, "ws://localhost:7880");
    assert_eq!(c.redis.address, "localhost:6379");
    assert_eq!(c.logging.level, "info");
    assert!(!c.logging.json);
    assert_eq!(c.template_port, 7980);
    assert_eq!(c.template_base, "http://localhost:7980/");
    assert_eq!(
        (c.health_port, c.prometheus_port, c.debug_handler_port),
        (0, 0, 0)
    );
    assert_eq!(c.cluster_id, "");
    assert_eq!(c.max_upload_queue, 60);
    assert_eq!(c.io_create_timeout, Duration::from_secs(15));
    assert_eq!(c.io_update_timeout, Duration::from_secs(30));
    assert_eq!(c.io_selection_timeout, Duration::ZERO);
    assert_eq!(c.io_workers, 5);
    assert_eq!(c.session_limits, SessionLimits::default());
    assert!(c.storage.is_none() && c.backup.is_none() && c.backup_storage.is_none());
    assert_eq!(c.pulse_sink_reap_grace_sec, 30);
    assert_eq!(c.video_encoder_threads, 0);

    let cc = &c.cpu_cost;
    assert_eq!(cc.max_cpu_utilization, 0.8);
    assert_eq!(cc.max_memory, 0.0);
    assert_eq!(cc.memory_cost, 0.0);
    assert_eq!(cc.room_composite_cpu_cost, 4.0);
    assert_eq!(cc.audio_room_composite_cpu_cost, 1.0);
    assert_eq!(cc.sdk_audio_room_composite_cpu_cost, 1.0);
    assert_eq!(cc.sdk_audio_room_composite_memory_cost, 0.0);
    assert_eq!(cc.web_cpu_cost, 4.0);
    assert_eq!(cc.audio_web_cpu_cost, 1.0);
    assert_eq!(cc.participant_cpu_cost, 2.0);
    assert_eq!(cc.track_composite_cpu_cost, 1.0);
    assert_eq!(cc.track_cpu_cost, 0.5);
    assert_eq!(cc.max_pulse_clients, 60);
    assert_eq!(cc.memory_source, MemorySource::ProcRss);
    assert_eq!(cc.memory_kill_grace_sec, 0);
    assert_eq!(cc.cpu_kill_grace_sec, 30);
    assert_eq!(cc, &CpuCostConfig::default(), "Default is the Go defaults");

    let l = &c.latency;
    assert_eq!(l.jitter_buffer_latency, Duration::from_secs(2));
    assert_eq!(l.audio_mixer_latency, Duration::from_millis(2750));
    assert_eq!(l.pipeline_latency, Duration::from_secs(3));
    assert_eq!(l.rtp_max_allowed_ts_diff, Duration::from_secs(5));
    assert_eq!(l.rtp_max_drift_adjustment, Duration::from_millis(5));
    assert_eq!(l.rtp_drift_adjustment_window_percent, 0.0);
    assert_eq!(l.old_packet_threshold, Duration::from_millis(2200));

    assert!(!c.audio_tempo_controller.enabled);
    assert_eq!(c.audio_tempo_controller.adjustment_rate, 0.05);
}

#[test]
fn template_base_follows_template_port() {
    let c = ok(&with("template_port: 8000\n")).config;
    assert_eq!(c.template_base, "http://localhost:8000/");
    let c = ok(&with("template_base: https://templates.example.com/\n")).config;
    assert_eq!(c.template_base, "https://templates.example.com/");
}

#[test]
fn every_required_key_is_reported() {
    let errs = errors("");
    assert_eq!(
        errs,
        [
            "missing required key api_key (or set LIVEKIT_API_KEY)",
            "missing required key api_secret (or set LIVEKIT_API_SECRET)",
            "missing required key ws_url (or set LIVEKIT_WS_URL)",
            "missing required key redis.address",
        ]
    );
    // Each one alone.
    for (drop, want) in [
        (
            "api_key",
            "missing required key api_key (or set LIVEKIT_API_KEY)",
        ),
        (
            "api_secret",
            "missing required key api_secret (or set LIVEKIT_API_SECRET)",
        ),
        (
            "ws_url",
            "missing required key ws_url (or set LIVEKIT_WS_URL)",
        ),
        ("redis", "missing required key redis.address"),
    ] {
        let yaml: String = MINIMAL
            .lines()
            .filter(|l| !(l.starts_with(drop) || (drop == "redis" && l.starts_with("  "))))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(errors(&yaml), [want], "dropping {drop}");
    }
    // Sentinel or cluster addresses replace redis.address.
    let base = "api_key: k\napi_secret: s\nws_url: wss://x\n";
    ok(&format!("{base}redis:\n  cluster_addresses: [a:1, b:2]\n"));
    ok(&format!(
        "{base}redis:\n  sentinel_master_name: m\n  sentinel_addresses: [a:1]\n"
    ));
    assert_eq!(
        errors(&format!("{base}redis:\n  sentinel_addresses: [a:1]\n")),
        [
            "missing required key redis.sentinel_master_name (required with redis.sentinel_addresses)"
        ]
    );
}

#[test]
fn env_fills_empty_keys_only() {
    let env = env_of(&[
        ("LIVEKIT_API_KEY", "env-key"),
        ("LIVEKIT_API_SECRET", "env-secret"),
        ("LIVEKIT_WS_URL", "wss://env.example.com"),
    ]);
    let c = ok_with("redis:\n  address: r:6379\n", &env).config;
    assert_eq!(c.api_key, "env-key");
    assert_eq!(c.api_secret.expose(), "env-secret");
    assert_eq!(c.ws_url, "wss://env.example.com");
    // YAML wins over env.
    let c = ok_with(MINIMAL, &env).config;
    assert_eq!(c.api_key, "key");
    assert_eq!(c.api_secret.expose(), "shh");
    assert_eq!(c.ws_url, "ws://localhost:7880");
    // Empty env values do not count.
    let empty = env_of(&[("LIVEKIT_API_KEY", "")]);
    let e = parse(
        "api_secret: s\nws_url: ws://x\nredis: {address: r}\n",
        &empty,
    )
    .unwrap_err();
    assert_eq!(
        e.messages(),
        ["missing required key api_key (or set LIVEKIT_API_KEY)"]
    );
}

#[test]
fn env_fills_storage_credentials() {
    let env = env_of(&[
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ("AWS_SESSION_TOKEN", "aws-token"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AZURE_STORAGE_ACCOUNT", "acct"),
        ("AZURE_STORAGE_KEY", "azkey"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/gcp.json"),
    ]);
    let yaml = with(
        "storage:\n  s3:\n    bucket: b\n    region: us-east-1\nbackup:\n  azure:\n    container_name: c\n\
         debug:\n  gcp:\n    bucket: g\n",
    );
    let c = ok_with(&yaml, &env).config;
    let s3 = c.storage.as_ref().and_then(|s| s.s3.as_ref()).expect("s3");
    assert_eq!(s3.access_key.expose(), "AKIA");
    assert_eq!(s3.secret.expose(), "aws-secret");
    assert_eq!(s3.session_token.expose(), "aws-token");
    assert_eq!(s3.region, "us-east-1", "yaml wins");
    let azure = c
        .backup
        .as_ref()
        .and_then(|s| s.azure.as_ref())
        .expect("azure");
    assert_eq!(azure.account_name, "acct");
    assert_eq!(azure.account_key.expose(), "azkey");
    let gcp = c.debug.gcp.as_ref().expect("gcp");
    assert!(gcp.credentials_json.is_empty());
    assert_eq!(
        gcp.credentials_file.as_deref(),
        Some(std::path::Path::new("/secrets/gcp.json"))
    );
    // With credentials_json set the env is not used.
    let c = ok_with(
        &with("storage:\n  gcp:\n    bucket: g\n    credentials_json: '{}'\n"),
        &env,
    )
    .config;
    let gcp = c.storage.and_then(|s| s.gcp).expect("gcp");
    assert_eq!(gcp.credentials_file, None);
    // AWS_DEFAULT_REGION when the YAML has none.
    let c = ok_with(&with("storage:\n  s3:\n    bucket: b\n"), &env).config;
    assert_eq!(
        c.storage.and_then(|s| s.s3).expect("s3").region,
        "eu-west-1"
    );
}

#[test]
fn legacy_log_level() {
    let loaded = ok(&with("log_level: debug\n"));
    assert_eq!(loaded.config.logging.level, "debug");
    assert_eq!(
        warnings(&loaded),
        ["log_level is deprecated, use logging.level"]
    );

    let loaded = ok(&with("log_level: debug\nlogging:\n  level: warn\n"));
    assert_eq!(loaded.config.logging.level, "warn");
    assert_eq!(
        warnings(&loaded),
        ["log_level is ignored: logging.level is also set and wins (log_level is deprecated)"]
    );
}

#[test]
fn legacy_storage_sections() {
    let loaded = ok(&with("s3:\n  bucket: b\n  access_key: AK\n  secret: SK\n"));
    let storage = loaded.config.storage.as_ref().expect("storage");
    assert_eq!(storage.s3.as_ref().map(|s| s.bucket.as_str()), Some("b"));
    assert_eq!(
        warnings(&loaded),
        ["s3 is deprecated, move it under storage:"]
    );

    // Old egress used the first of s3, azure, gcp, alioss.
    let loaded = ok(&with("azure:\n  container_name: c\ns3:\n  bucket: b\n"));
    let storage = loaded.config.storage.as_ref().expect("storage");
    assert_eq!(storage.providers(), ["s3"]);
    assert_eq!(
        warnings(&loaded),
        [
            "s3 is deprecated, move it under storage:",
            "azure is ignored: the top-level s3 section takes precedence (legacy behaviour)"
        ]
    );

    // The legacy section joins an existing storage: prefix.
    let c = ok(&with("storage:\n  prefix: p/\ngcp:\n  bucket: g\n")).config;
    let storage = c.storage.expect("storage");
    assert_eq!(
        (storage.prefix.as_str(), storage.providers()),
        ("p/", vec!["gcp"])
    );

    // Both forms of the same provider: error.
    assert_eq!(
        errors(&with("s3:\n  bucket: a\nstorage:\n  s3:\n    bucket: b\n")),
        [
            "conflicting keys s3 and storage.s3: the top-level form is deprecated, keep only storage.s3"
        ]
    );
    // A legacy provider next to a different new one: two providers.
    assert_eq!(
        errors(&with(
            "s3:\n  bucket: a\nstorage:\n  azure:\n    container_name: c\n"
        )),
        ["invalid value for storage: more than one provider is set (s3, azure); set only one"]
    );
}

#[test]
fn legacy_backup_storage_proxy_and_path_prefix() {
    let loaded = ok(&with(
        "backup_storage: /out/failed\nstorage:\n  s3:\n    bucket: b\n    proxy: http://proxy:3128\n\
         debug:\n  path_prefix: dbg/\n",
    ));
    assert_eq!(loaded.config.backup_storage.as_deref(), Some("/out/failed"));
    let s3 = loaded
        .config
        .storage
        .as_ref()
        .and_then(|s| s.s3.as_ref())
        .expect("s3");
    assert_eq!(
        s3.proxy_config.as_ref().map(|p| p.url.as_str()),
        Some("http://proxy:3128")
    );
    assert_eq!(loaded.config.debug.prefix, "dbg/");
    assert_eq!(
        warnings(&loaded),
        [
            "storage.s3.proxy is deprecated, use storage.s3.proxy_config.url",
            "debug.path_prefix is deprecated, use debug.prefix",
            "backup_storage is deprecated, it has no effect (kept as \"/out/failed\"); configure a backup: section \
             (s3, azure, gcp or alioss) instead",
        ]
    );
}

#[test]
fn wrong_type_names_path_and_position() {
    let yaml = "api_key: k\napi_secret: s\nws_url: ws://x\nredis:\n  address: r\n  db: lots\nhealth_port: abc\n";
    assert_eq!(
        errors(yaml),
        [
            "config error at redis.db (line 6, column 7): invalid type: string \"lots\", expected u32"
        ]
    );
    let yaml = with("health_port: abc\n");
    assert_eq!(
        errors(&yaml),
        [
            "config error at health_port (line 7, column 14): invalid type: string \"abc\", expected u16"
        ]
    );
    let errs = errors(&with(
        "session_limits:\n  file_output_max_duration: 3 days\n",
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "config error at session_limits.file_output_max_duration (line 8, column 29): "
        ),
        "{errs:?}"
    );
    let errs = errors(&with("health_port: 70000\n"));
    assert!(
        errs[0].starts_with("config error at health_port (line 7, column 14): invalid value"),
        "{errs:?}"
    );
    let errs = errors("redis:\n  address: r\n  sentinel_addresses: [1, [2]]\n");
    assert!(
        errs[0].starts_with("config error at redis.sentinel_addresses[1] "),
        "{errs:?}"
    );
}

#[test]
fn syntax_errors() {
    let Err(ConfigError::Syntax { message }) = parse("api_key: [unclosed\n", &EmptyEnv) else {
        panic!("expected a syntax error");
    };
    assert!(message.contains("line"), "{message}");
    let err = parse("- a\n- b\n", &EmptyEnv).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not parse config: expected a mapping of keys to values, found a list"
    );
}

#[test]
fn unknown_keys_are_warnings_with_full_paths() {
    let loaded = ok(&with(
        "room_only: false\nredis_typo: 1\ncpu_cost:\n  web_cpu_costs: 3\nstorage:\n  s3:\n    bucket: b\n    buket: c\n\
         debug:\n  enable_profilng: true\n",
    ));
    assert_eq!(
        warnings(&loaded),
        [
            "unknown key room_only (ignored)",
            "unknown key redis_typo (ignored)",
            "unknown key cpu_cost.web_cpu_costs (ignored)",
            "unknown key storage.s3.buket (ignored)",
            "unknown key debug.enable_profilng (ignored)",
        ]
    );
    // Unknown keys inside redis (an Option section) too, and they survive a failing config.
    let err = parse("redis:\n  adress: r\n", &EmptyEnv).unwrap_err();
    let w: Vec<String> = err.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w, ["unknown key redis.adress (ignored)"]);
}

#[test]
fn invalid_values_are_all_collected() {
    let errs = errors(&with(
        "logging:\n  level: verbose\ncpu_cost:\n  memory_source: rss\n  max_memory: -1\ntemplate_base: ftp://x/\n\
         storage:\n  s3:\n    bucket: b\n  gcp:\n    bucket: g\nbackup:\n  azure: {}\nhealth_port: 9090\n\
         prometheus_port: 9090\n",
    ));
    assert_eq!(
        errs,
        [
            "invalid value for logging.level: \"verbose\" is not one of debug, info, warn, error",
            "invalid value for template_base: \"ftp://x/\" must be an http:// or https:// URL",
            "invalid value for prometheus_port: port 9090 is also used by health_port",
            "invalid value for storage: more than one provider is set (s3, gcp); set only one",
            "missing required key backup.azure.container_name",
            "invalid value for cpu_cost.max_memory: -1 must be 0 or more",
            "invalid value for cpu_cost.memory_source: \"rss\" is not one of proc_rss, cgroup",
        ]
    );
    assert_eq!(
        errors(&with(
            "debug:\n  s3:\n    bucket: a\n  alioss:\n    bucket: b\n"
        )),
        ["invalid value for debug: more than one provider is set (s3, alioss); set only one"]
    );
    assert_eq!(
        errors("api_key: k\napi_secret: s\nws_url: localhost:7880\nredis:\n  address: r\n"),
        [
            "invalid value for ws_url: \"localhost:7880\" must start with ws://, wss://, http:// or https://"
        ]
    );
}

#[test]
fn log_levels_are_case_insensitive() {
    assert_eq!(
        ok(&with("logging:\n  level: WARN\n")).config.logging.level,
        "warn"
    );
}

#[test]
fn cpu_cost_rules() {
    let loaded = ok(&with(
        "cpu_cost:\n  max_cpu_utilization: 1.5\n  audio_room_composite_cpu_cost: 2.5\n  memory_cost: 1.5\n\
         \x20 web_cpu_cost: -1\n  track_cpu_cost: 0\n  cpu_kill_grace_sec: -5\n  memory_source: cgroup\n",
    ));
    let cc = &loaded.config.cpu_cost;
    assert_eq!(cc.max_cpu_utilization, 0.8);
    assert_eq!(cc.audio_room_composite_cpu_cost, 2.5);
    assert_eq!(
        cc.sdk_audio_room_composite_cpu_cost, 2.5,
        "falls back to audio_room_composite_cpu_cost"
    );
    assert_eq!(
        cc.sdk_audio_room_composite_memory_cost, 1.5,
        "falls back to memory_cost"
    );
    assert_eq!(cc.web_cpu_cost, 4.0);
    assert_eq!(cc.track_cpu_cost, 0.5);
    assert_eq!(cc.cpu_kill_grace_sec, 30);
    assert_eq!(cc.memory_source, MemorySource::Cgroup);
    assert_eq!(
        warnings(&loaded),
        [
            "cpu_cost.max_cpu_utilization: 1.5 is outside (0, 1], using 0.8",
            "cpu_cost.web_cpu_cost: -1 is negative, using the default 4",
            "cpu_cost.cpu_kill_grace_sec: -5 is negative, using the default 30",
        ]
    );
    let cc = ok(&with(
        "cpu_cost:\n  max_cpu_utilization: 1\n  sdk_audio_room_composite_cpu_cost: 0.25\n",
    ))
    .config
    .cpu_cost;
    assert_eq!(cc.max_cpu_utilization, 1.0);
    assert_eq!(cc.sdk_audio_room_composite_cpu_cost, 0.25);
}

#[test]
fn durations_and_latency() {
    let c = ok(&with(
        "io_create_timeout: 1m\nio_selection_timeout: 500ms\nsession_limits:\n  file_output_max_duration: 1h\n\
         \x20 stream_output_max_duration: 90m\n  segment_output_max_duration: 2h45m0.5s\n  file_output_max_size: 1000000\n\
         latency:\n  jitter_buffer_latency: 6s\n  audio_mixer_latency: 7s\n  rtpmaxdriftadjustment: 10ms\n\
         latency_overrides:\n  track:\n    pipeline_latency: 1s\n",
    ))
    .config;
    assert_eq!(c.io_create_timeout, Duration::from_secs(60));
    assert_eq!(c.io_selection_timeout, Duration::from_millis(500));
    assert_eq!(
        c.session_limits.file_output_max_duration,
        Duration::from_secs(3600)
    );
    assert_eq!(
        c.session_limits.stream_output_max_duration,
        Duration::from_secs(5400)
    );
    assert_eq!(
        c.session_limits.segment_output_max_duration,
        Duration::from_millis(9_900_500)
    );
    assert_eq!(c.session_limits.file_output_max_size, 1_000_000);
    assert_eq!(
        c.latency.rtp_max_allowed_ts_diff,
        Duration::from_secs(6),
        "raised to the jitter buffer"
    );
    assert_eq!(
        c.latency.rtp_max_drift_adjustment,
        Duration::from_millis(10)
    );
    let track = c.latency_for("track");
    assert_eq!(track.pipeline_latency, Duration::from_secs(1));
    assert_eq!(
        track.jitter_buffer_latency,
        Duration::from_secs(2),
        "defaults applied to overrides"
    );
    assert_eq!(
        c.latency_for("web").pipeline_latency,
        Duration::from_secs(3)
    );

    let c = ok(&with("latency:\n  rtp_max_allowed_ts_diff: 8s\n")).config;
    assert_eq!(c.latency.rtp_max_allowed_ts_diff, Duration::from_secs(8));

    let loaded = ok(&with(
        "latency_overrides:\n  composite:\n    pipeline_latency: 1s\n",
    ));
    assert_eq!(
        warnings(&loaded),
        [
            "latency_overrides.composite is ignored: not a request type (one of template, web, media, room_composite, \
          participant, track_composite, track)"
        ]
    );
}

#[test]
fn audio_tempo_controller_rate() {
    let c = ok(&with(
        "audio_tempo_controller:\n  enabled: true\n  adjustment_rate: 0.1\n",
    ))
    .config;
    assert_eq!(c.audio_tempo_controller.adjustment_rate, 0.1);
    let loaded = ok(&with(
        "audio_tempo_controller:\n  enabled: true\n  adjustment_rate: 0.5\n",
    ));
    assert_eq!(loaded.config.audio_tempo_controller.adjustment_rate, 0.05);
    assert_eq!(
        warnings(&loaded),
        ["audio_tempo_controller.adjustment_rate: 0.5 is outside (0, 0.2], using 0.05"]
    );
}

#[test]
fn s3_retry_defaults() {
    let c = ok(&with("storage:\n  s3:\n    bucket: b\n")).config;
    let s3 = c.storage.and_then(|s| s.s3).expect("s3");
    assert_eq!(s3.max_retries, 5);
    assert_eq!(s3.max_retry_delay, Duration::from_secs(5));
    assert_eq!(s3.min_retry_delay, Duration::from_millis(100));
    let c = ok(&with(
        "storage:\n  s3:\n    bucket: b\n    max_retries: 2\n    max_retry_delay: 1s\n",
    ))
    .config;
    let s3 = c.storage.and_then(|s| s.s3).expect("s3");
    assert_eq!(
        (s3.max_retries, s3.max_retry_delay),
        (2, Duration::from_secs(1))
    );
}

#[test]
fn null_values_are_zero_values() {
    let c = ok(&with(
        "storage:\ndebug:\nlatency_overrides:\nchrome_flags:\nlogging:\nsession_limits:\ncpu_cost:\n\
         api_secret_extra:\n",
    ))
    .config;
    assert!(c.storage.is_none());
    assert_eq!(c.logging.level, "info");
    let c = ok("api_key: k\napi_secret: s\nws_url: ws://x\nredis:\n  address: r\n  sentinel_addresses:\n  password:\n")
        .config;
    assert!(c.redis.sentinel_addresses.is_empty() && c.redis.password.is_empty());
}

const SECRETS: &[&str] = &[
    "API-SECRET-VALUE",
    "REDIS-PASSWORD",
    "SENTINEL-PASSWORD",
    "S3-ACCESS",
    "S3-SECRET",
    "S3-TOKEN",
    "PROXY-PASSWORD",
    "ASSUME-KEY",
    "ASSUME-SECRET",
    "AZURE-KEY",
    "GCP-JSON",
    "ALI-ACCESS",
    "ALI-SECRET",
    "DEBUG-S3-SECRET",
];

const WITH_SECRETS: &str = "
api_key: APIKEY-IDENTIFIER
api_secret: API-SECRET-VALUE
ws_url: wss://lk.example.com
redis:
  address: r:6379
  password: REDIS-PASSWORD
  sentinel_password: SENTINEL-PASSWORD
s3_assume_role_key: ASSUME-KEY
s3_assume_role_secret: ASSUME-SECRET
storage:
  s3:
    access_key: S3-ACCESS
    secret: S3-SECRET
    session_token: S3-TOKEN
    bucket: b
    proxy_config:
      url: http://proxy
      username: proxy-user
      password: PROXY-PASSWORD
backup:
  azure:
    account_name: acct
    account_key: AZURE-KEY
    container_name: c
debug:
  s3:
    bucket: d
    secret: DEBUG-S3-SECRET
";

#[test]
fn redaction_hides_every_secret() {
    let mut all = WITH_SECRETS.to_string();
    let c = ok(&all).config;
    let mut outputs = vec![c.to_redacted_yaml(), format!("{c:?}")];
    // The other providers, one at a time (only one provider per section).
    all = all.replace(
        "backup:\n  azure:\n    account_name: acct\n    account_key: AZURE-KEY\n    container_name: c\n",
        "backup:\n  gcp:\n    credentials_json: GCP-JSON\n    bucket: g\n",
    );
    let c = ok(&all).config;
    outputs.push(c.to_redacted_yaml());
    all = all.replace(
        "backup:\n  gcp:\n    credentials_json: GCP-JSON\n    bucket: g\n",
        "backup:\n  alioss:\n    access_key: ALI-ACCESS\n    secret: ALI-SECRET\n    bucket: a\n",
    );
    let c = ok(&all).config;
    outputs.push(c.to_redacted_yaml());
    outputs.push(format!("{c:?}"));
    for out in &outputs {
        for secret in SECRETS {
            assert!(!out.contains(secret), "{secret} leaked in:\n{out}");
        }
        assert!(out.contains("APIKEY-IDENTIFIER"), "api_key is printed");
    }
    let yaml = &outputs[0];
    assert!(yaml.contains("api_secret: <redacted>"), "{yaml}");
    assert!(yaml.contains("username: proxy-user"), "{yaml}");
    assert!(yaml.contains("session_token: <redacted>"), "{yaml}");
    // Empty secrets stay visibly empty.
    assert!(yaml.contains("username: ''"), "{yaml}");
}

#[test]
fn redacted_yaml_parses_back_to_the_same_shape() {
    let c = ok(WITH_SECRETS).config;
    let yaml = c.to_redacted_yaml();
    let again = ok(&yaml);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    let mut expected = c.clone();
    // Secrets come back as the literal "<redacted>".
    expected.api_secret = Secret::new(REDACTED);
    assert_eq!(again.config.latency, expected.latency);
    assert_eq!(again.config.cpu_cost, expected.cpu_cost);
    assert_eq!(again.config.session_limits, expected.session_limits);
    assert_eq!(again.config.template_base, expected.template_base);
}

#[test]
fn source_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("egress.yaml");
    std::fs::write(&file, "api_key: from-file\n").expect("write");
    let src = ConfigSource {
        body: Some("api_key: from-body\n".into()),
        file: Some(file.clone()),
    };
    assert_eq!(read_source(&src).expect("read"), "api_key: from-body\n");
    let src = ConfigSource {
        body: Some("  \n".into()),
        file: Some(file.clone()),
    };
    assert_eq!(read_source(&src).expect("read"), "api_key: from-file\n");
    let src = ConfigSource::default();
    assert!(matches!(read_source(&src), Err(ConfigError::Missing)));
    assert!(
        read_source(&src)
            .unwrap_err()
            .to_string()
            .starts_with("missing config")
    );
    let src = ConfigSource {
        body: None,
        file: Some(dir.path().join("nope.yaml")),
    };
    let err = read_source(&src).unwrap_err();
    assert!(
        err.to_string().starts_with("could not read config file "),
        "{err}"
    );
    // load_with_env goes through the same path.
    let src = ConfigSource {
        body: Some(MINIMAL.into()),
        file: None,
    };
    assert!(load_with_env(&src, &EmptyEnv).is_ok());
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(yaml in "\\PC{0,64}") {
        let _ = parse(&yaml, &EmptyEnv);
    }

    #[test]
    fn parse_never_panics_on_keyed_values(
        key in "(api_key|health_port|redis|storage|cpu_cost|latency|session_limits|log_level|s3|debug)",
        value in "[a-z0-9.:{}\\[\\], -]{0,24}",
    ) {
        let _ = parse(&format!("{key}: {value}\n"), &EmptyEnv);
    }
}

#[test]
fn stream_reconnect_defaults_keys_and_rules() {
    // A Go config has no such section: the defaults apply, with no warning.
    let c = ok(MINIMAL).config.stream_reconnect;
    assert_eq!(c, StreamReconnect::default());
    assert_eq!(c.window, Duration::from_secs(60));
    assert_eq!(c.initial_delay, Duration::from_millis(500));
    assert_eq!(c.max_delay, Duration::from_secs(10));
    assert_eq!(c.min_interval, Duration::from_secs(1));
    assert_eq!(c.jitter, 0.2);
    assert!(c.retry_srt);

    // Every key; 0 is a value (a window of 0 fails a URL at its first drop), not "default".
    let loaded = ok(&with(
        "stream_reconnect:\n  window: 0\n  initial_delay: 0s\n  max_delay: 2s\n  min_interval: 0s\n  jitter: 0\n  retry_srt: false\n",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.stream_reconnect,
        StreamReconnect {
            window: Duration::ZERO,
            initial_delay: Duration::ZERO,
            max_delay: Duration::from_secs(2),
            min_interval: Duration::ZERO,
            jitter: 0.0,
            retry_srt: false,
        }
    );
    // Absent keys keep their defaults beside set ones; a null section is the defaults.
    let c = ok(&with("stream_reconnect:\n  window: 5s\n"))
        .config
        .stream_reconnect;
    assert_eq!(c.window, Duration::from_secs(5));
    assert_eq!(c.max_delay, Duration::from_secs(10));
    assert_eq!(
        ok(&with("stream_reconnect:\n")).config.stream_reconnect,
        StreamReconnect::default()
    );

    // Unknown keys are warnings with their path, as everywhere.
    let loaded = ok(&with("stream_reconnect:\n  windows: 5s\n"));
    assert_eq!(
        warnings(&loaded),
        ["unknown key stream_reconnect.windows (ignored)"]
    );
    // Bad values are errors naming the key.
    assert_eq!(
        errors(&with(
            "stream_reconnect:\n  initial_delay: 20s\n  max_delay: 10s\n  jitter: 1.5\n"
        )),
        [
            "invalid value for stream_reconnect.max_delay: 10s is less than initial_delay (20s)",
            "invalid value for stream_reconnect.jitter: 1.5 must be between 0 and 1",
        ]
    );
    let errs = errors(&with("stream_reconnect:\n  window: -5s\n"));
    assert!(
        errs.len() == 1
            && errs[0].contains("stream_reconnect.window")
            && errs[0].contains("negative"),
        "{errs:?}"
    );
    let errs = errors(&with("stream_reconnect:\n  retry_srt: sometimes\n"));
    assert!(
        errs.len() == 1 && errs[0].contains("stream_reconnect.retry_srt"),
        "{errs:?}"
    );

    // The printed config carries the section and parses back to it.
    let c = ok(&with(
        "stream_reconnect:\n  window: 90s\n  retry_srt: false\n",
    ))
    .config;
    let yaml = c.to_redacted_yaml();
    assert!(
        yaml.contains("stream_reconnect:\n  window: 1m30s\n"),
        "{yaml}"
    );
    let again = ok(&yaml);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.config.stream_reconnect, c.stream_reconnect);
}

#[test]
fn segments_and_images_defaults_keys_and_rules() {
    // A Go config has no such sections: Go's window, 4 uploads, images not fatal; no warning.
    let loaded = ok(MINIMAL);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.segments, SegmentsConfig::default());
    assert_eq!(
        (c.segments.live_playlist_window, c.segments.parallel_uploads),
        (5, 4)
    );
    assert!(!c.images.upload_failure_fails_egress);

    // Every key.
    let loaded = ok(&with(
        "segments:\n  live_playlist_window: 8\n  parallel_uploads: 1\nimages:\n  upload_failure_fails_egress: true\n",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.segments,
        SegmentsConfig {
            live_playlist_window: 8,
            parallel_uploads: 1
        }
    );
    assert!(loaded.config.images.upload_failure_fails_egress);
    // Absent keys keep their defaults; empty sections are the defaults.
    let c = ok(&with("segments:\n  parallel_uploads: 16\nimages:\n")).config;
    assert_eq!(
        (c.segments.live_playlist_window, c.segments.parallel_uploads),
        (5, 16)
    );
    assert_eq!(c.images, ImagesConfig::default());

    // Unknown keys are warnings with their path.
    let loaded = ok(&with("segments:\n  window: 3\nimages:\n  fail: true\n"));
    assert_eq!(
        warnings(&loaded),
        [
            "unknown key segments.window (ignored)",
            "unknown key images.fail (ignored)"
        ]
    );
    // Bad values are errors naming the key.
    assert_eq!(
        errors(&with(
            "segments:\n  live_playlist_window: 0\n  parallel_uploads: 65\n"
        )),
        [
            "invalid value for segments.live_playlist_window: 0 must be at least 1",
            "invalid value for segments.parallel_uploads: 65 must be between 1 and 64",
        ]
    );
    assert_eq!(
        errors(&with("segments:\n  parallel_uploads: -2\n")),
        ["invalid value for segments.parallel_uploads: -2 must be between 1 and 64"]
    );
    let errs = errors(&with("images:\n  upload_failure_fails_egress: sometimes\n"));
    assert!(
        errs.len() == 1 && errs[0].contains("images.upload_failure_fails_egress"),
        "{errs:?}"
    );

    // The printed config carries both sections and parses back to them.
    let c = ok(&with(
        "segments:\n  live_playlist_window: 3\nimages:\n  upload_failure_fails_egress: true\n",
    ))
    .config;
    let yaml = c.to_redacted_yaml();
    assert!(
        yaml.contains("segments:\n  live_playlist_window: 3\n  parallel_uploads: 4\nimages:\n  upload_failure_fails_egress: true\n"),
        "{yaml}"
    );
    let again = ok(&yaml);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.config.segments, c.segments);
    assert_eq!(again.config.images, c.images);
}

#[test]
fn streams_defaults_keys_and_rules() {
    // A Go config has no such section: Twitch's global ingest and 2 s keyframes, no warning.
    let loaded = ok(MINIMAL);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.streams, StreamsConfig::default());
    assert_eq!(
        loaded.config.streams.twitch_ingest,
        "rtmps://live.twitch.tv:443/app/{stream_key}"
    );
    assert_eq!(
        loaded.config.streams.keyframe_interval,
        Duration::from_secs(2)
    );

    // Every key; `4s` is Go's keyframe interval.
    let loaded = ok(&with(
        "streams:\n  twitch_ingest: rtmp://fra05.contribute.live-video.net/app/{stream_key}\n  keyframe_interval: 4s\n",
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.config.streams,
        StreamsConfig {
            twitch_ingest: "rtmp://fra05.contribute.live-video.net/app/{stream_key}".into(),
            keyframe_interval: Duration::from_secs(4),
        }
    );

    // Unknown keys warn with their path; bad values are errors naming the key.
    let loaded = ok(&with("streams:\n  keyframe: 4s\n"));
    assert_eq!(
        warnings(&loaded),
        ["unknown key streams.keyframe (ignored)"]
    );
    assert_eq!(
        errors(&with(
            "streams:\n  twitch_ingest: https://example.com/{stream_key}\n  keyframe_interval: 0s\n"
        )),
        [
            "invalid value for streams.twitch_ingest: \"https://example.com/{stream_key}\" must be an rtmp:// or rtmps:// URL containing {stream_key}",
            "invalid value for streams.keyframe_interval: 0s: streams need keyframes",
        ]
    );

    // The printed config carries the section and parses back to it.
    let c = ok(&with("streams:\n  keyframe_interval: 4s\n")).config;
    let yaml = c.to_redacted_yaml();
    assert!(yaml.contains("  keyframe_interval: 4s\n"), "{yaml}");
    assert_eq!(ok(&yaml).config.streams, c.streams);
}
