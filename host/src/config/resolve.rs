//! From the YAML as written (`RawConfig`) to the `ServiceConfig` the service runs with:
//! env fallbacks, legacy keys, the Go defaults, and semantic validation. Every problem is
//! collected, not just the first.

use std::time::Duration;

use super::env::{self, Env};
use super::error::{ConfigIssue, ConfigWarning};
use super::model::{
    AliOssConfig, AudioTempoController, AzureConfig, CpuCostConfig, DebugConfig, GcpConfig,
    ImagesConfig, LatencyConfig, LoggingConfig, MemorySource, PluginEntry, PluginSource,
    ProxyConfig, RedisConfig, S3Config, SegmentsConfig, ServiceConfig, StorageConfig,
    StreamReconnect, StreamsConfig, WasmSandbox,
};
use super::raw::{
    RawConfig, RawCpuCost, RawImages, RawPlugin, RawSegments, RawStreamReconnect, RawStreams,
};
use super::secret::Secret;

use super::defaults::*;

/// `images:`: absent keys take the defaults (Go's behaviour is opt-in).
fn images(raw: RawImages) -> ImagesConfig {
    ImagesConfig {
        upload_failure_fails_egress: raw.upload_failure_fails_egress.unwrap_or(false),
    }
}

/// Collects warnings and issues while resolving.
pub(crate) struct Resolver<'a> {
    env: &'a dyn Env,
    pub warnings: Vec<ConfigWarning>,
    pub issues: Vec<ConfigIssue>,
}

impl<'a> Resolver<'a> {
    pub fn new(env: &'a dyn Env, warnings: Vec<ConfigWarning>) -> Self {
        Resolver {
            env,
            warnings,
            issues: Vec::new(),
        }
    }

    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning::Value {
            key: key.into(),
            message: message.into(),
        });
    }

    fn deprecated(&mut self, key: impl Into<String>, hint: impl Into<String>) {
        self.warnings.push(ConfigWarning::Deprecated {
            key: key.into(),
            hint: hint.into(),
        });
    }

    fn ignored(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(ConfigWarning::Ignored {
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn invalid(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue::InvalidValue {
            key: key.into(),
            message: message.into(),
        });
    }

    fn missing(&mut self, key: impl Into<String>, env: Option<&str>, hint: Option<&str>) {
        self.issues.push(ConfigIssue::MissingKey {
            key: key.into(),
            env: env.map(str::to_string),
            hint: hint.map(str::to_string),
        });
    }

    /// `value` if non-empty, else the env variable, else empty.
    fn or_env(&self, value: String, var: &str) -> String {
        if value.is_empty() {
            self.env.get(var).unwrap_or_default()
        } else {
            value
        }
    }

    fn secret_or_env(&self, value: Secret, var: &str) -> Secret {
        if value.is_empty() {
            self.env.get(var).map(Secret::from).unwrap_or_default()
        } else {
            value
        }
    }

    pub fn resolve(&mut self, raw: RawConfig) -> ServiceConfig {
        // Required keys, with the env fallbacks Go seeds before parsing.
        let api_key = self.or_env(raw.api_key, env::LIVEKIT_API_KEY);
        if api_key.is_empty() {
            self.missing("api_key", Some(env::LIVEKIT_API_KEY), None);
        }
        let api_secret = self.secret_or_env(raw.api_secret, env::LIVEKIT_API_SECRET);
        if api_secret.is_empty() {
            self.missing("api_secret", Some(env::LIVEKIT_API_SECRET), None);
        }
        let ws_url = self.or_env(raw.ws_url, env::LIVEKIT_WS_URL);
        if ws_url.is_empty() {
            self.missing("ws_url", Some(env::LIVEKIT_WS_URL), None);
        } else if !has_scheme(&ws_url, &["ws", "wss", "http", "https"]) {
            self.invalid(
                "ws_url",
                format!("{ws_url:?} must start with ws://, wss://, http:// or https://"),
            );
        }
        let redis = self.redis(raw.redis.unwrap_or_default());

        let logging = self.logging(raw.logging, raw.log_level);

        let template_port = if raw.template_port == 0 {
            DEFAULT_TEMPLATE_PORT
        } else {
            raw.template_port
        };
        let template_base = if raw.template_base.is_empty() {
            format!("http://localhost:{template_port}/")
        } else {
            if !has_scheme(&raw.template_base, &["http", "https"]) {
                self.invalid(
                    "template_base",
                    format!("{:?} must be an http:// or https:// URL", raw.template_base),
                );
            }
            raw.template_base
        };
        self.check_ports(&[
            ("health_port", raw.health_port),
            ("template_port", template_port),
            ("prometheus_port", raw.prometheus_port),
            ("debug_handler_port", raw.debug_handler_port),
        ]);

        let max_upload_queue = self.positive_int(
            "max_upload_queue",
            raw.max_upload_queue,
            DEFAULT_MAX_UPLOAD_QUEUE,
        );
        let io_workers = self.positive_int("io_workers", raw.io_workers, DEFAULT_IO_WORKERS);

        let (storage, backup) = self.storage_sections(
            raw.storage,
            raw.backup,
            [
                raw.s3.map(|p| Provider::S3(Box::new(p))),
                raw.azure.map(Provider::Azure),
                raw.gcp.map(Provider::Gcp),
                raw.alioss.map(Provider::AliOss),
            ],
        );
        let debug = self.debug(raw.debug);

        let mut latency = raw.latency;
        self.latency("latency", &mut latency);
        let mut latency_overrides = raw.latency_overrides;
        for (request_type, override_latency) in &mut latency_overrides {
            let key = format!("latency_overrides.{request_type}");
            if !REQUEST_TYPES.contains(&request_type.as_str()) {
                self.ignored(
                    &key,
                    format!("not a request type (one of {})", REQUEST_TYPES.join(", ")),
                );
            }
            self.latency(&key, override_latency);
        }

        let audio_tempo_controller = self.audio_tempo(raw.audio_tempo_controller);
        let stream_reconnect = self.stream_reconnect(raw.stream_reconnect);
        let streams = self.streams(raw.streams);
        let segments = self.segments(raw.segments);
        let images = images(raw.images);
        let cpu_cost = self.cpu_cost(raw.cpu_cost);
        let plugins = raw.plugins.map(|entries| self.plugins(entries));

        if let Some(dir) = &raw.backup_storage {
            self.deprecated(
                "backup_storage",
                format!(
                    "it has no effect (kept as {dir:?}); configure a backup: section (s3, azure, gcp or alioss) instead"
                ),
            );
        }

        ServiceConfig {
            redis,
            api_key,
            api_secret,
            ws_url,
            logging,
            template_base,
            cluster_id: raw.cluster_id,
            enable_chrome_sandbox: raw.enable_chrome_sandbox,
            max_upload_queue,
            disallow_local_storage: raw.disallow_local_storage,
            io_create_timeout: or_default(raw.io_create_timeout, DEFAULT_IO_CREATE_TIMEOUT),
            io_update_timeout: or_default(raw.io_update_timeout, DEFAULT_IO_UPDATE_TIMEOUT),
            io_selection_timeout: raw.io_selection_timeout,
            io_workers,
            session_limits: raw.session_limits,
            storage,
            backup,
            s3_assume_role_key: raw.s3_assume_role_key,
            s3_assume_role_secret: raw.s3_assume_role_secret,
            s3_assume_role_arn: raw.s3_assume_role_arn,
            s3_assume_role_external_id: raw.s3_assume_role_external_id,
            insecure: raw.insecure,
            debug,
            chrome_flags: raw.chrome_flags,
            latency,
            latency_overrides,
            video_encoder_threads: raw.video_encoder_threads,
            enable_one_shot_sender_report_sync: raw.enable_one_shot_sender_report_sync,
            enable_sync_engine: raw.enable_sync_engine,
            audio_tempo_controller,
            test_overrides: raw.test_overrides,
            stream_reconnect,
            streams,
            segments,
            images,
            health_port: raw.health_port,
            template_port,
            prometheus_port: raw.prometheus_port,
            debug_handler_port: raw.debug_handler_port,
            pulse_sink_reap_grace_sec: if raw.pulse_sink_reap_grace_sec == 0 {
                DEFAULT_PULSE_SINK_REAP_GRACE_SEC
            } else {
                raw.pulse_sink_reap_grace_sec
            },
            cpu_cost,
            backup_storage: raw.backup_storage,
            plugins,
        }
    }

    /// The `plugins:` list: one source per entry, sane names and sandboxes. Whether the files
    /// exist, load, speak our ABI and accept their config is the loader's job
    /// (`crate::plugins`), which reports against the same `plugins[i]` keys.
    fn plugins(&mut self, raw: Vec<RawPlugin>) -> Vec<PluginEntry> {
        let mut out = Vec::with_capacity(raw.len());
        let mut names: Vec<(String, usize)> = Vec::new();
        for (i, mut p) in raw.into_iter().enumerate() {
            let key = format!("plugins[{i}]");
            let source = match (p.builtin.take(), p.dylib.take(), p.wasm.take()) {
                (Some(name), None, None) => PluginSource::Builtin(name),
                (None, Some(path), None) => PluginSource::Dylib(path),
                (None, None, Some(path)) => PluginSource::Wasm(path),
                (None, None, None) => {
                    self.missing(&key, None, Some("set one of builtin, dylib or wasm"));
                    continue;
                }
                _ => {
                    self.invalid(&key, "set only one of builtin, dylib or wasm");
                    continue;
                }
            };
            match &source {
                PluginSource::Builtin(name) if name.is_empty() => {
                    self.missing(format!("{key}.builtin"), None, Some("a plugin name"));
                }
                PluginSource::Dylib(path) | PluginSource::Wasm(path)
                    if path.as_os_str().is_empty() =>
                {
                    self.missing(
                        format!("{key}.{}", source.kind()),
                        None,
                        Some("a file path"),
                    );
                }
                _ => {}
            }
            if let Some(name) = &p.name
                && !is_plugin_name(name)
            {
                self.invalid(
                    format!("{key}.name"),
                    format!("{name:?} must be lower-case letters, digits and -"),
                );
            }
            // Names known now; dylib and WASM names without an override are only known once
            // loaded, and the loader checks those.
            let known = p.name.clone().or(match &source {
                PluginSource::Builtin(name) => Some(name.clone()),
                _ => None,
            });
            if let Some(name) = known {
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == name) {
                    self.invalid(
                        format!("{key}.name"),
                        format!("plugin name {name:?} is already used by plugins[{first}]"),
                    );
                }
                names.push((name, i));
            }
            let sandboxed = p.max_memory_mb.is_some()
                || p.max_call_time.is_some()
                || p.allowed_hosts.is_some()
                || p.allowed_dirs.is_some();
            let sandbox = match &source {
                PluginSource::Wasm(_) => Some(self.sandbox(&key, &p)),
                _ => {
                    if sandboxed {
                        self.invalid(
                            &key,
                            "max_memory_mb, max_call_time, allowed_hosts and allowed_dirs apply only to wasm plugins",
                        );
                    }
                    None
                }
            };
            out.push(PluginEntry {
                name: p.name,
                source,
                sandbox,
                config: p.config,
            });
        }
        out
    }

    fn sandbox(&mut self, key: &str, p: &RawPlugin) -> WasmSandbox {
        let max_memory_mb = match p.max_memory_mb {
            None | Some(0) => DEFAULT_WASM_MAX_MEMORY_MB,
            Some(mb) if mb > MAX_WASM_MEMORY_MB => {
                self.invalid(
                    format!("{key}.max_memory_mb"),
                    format!(
                        "{mb} is more than a 32-bit WASM memory can hold ({MAX_WASM_MEMORY_MB})"
                    ),
                );
                MAX_WASM_MEMORY_MB
            }
            Some(mb) => mb,
        };
        let max_call_time = p
            .max_call_time
            .map(|d| d.0)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_WASM_MAX_CALL_TIME);
        let allowed_hosts = p.allowed_hosts.clone().unwrap_or_default();
        for (j, host) in allowed_hosts.iter().enumerate() {
            if !is_host_pattern(host) {
                self.invalid(
                    format!("{key}.allowed_hosts[{j}]"),
                    format!("{host:?} is not a host, host:port or *.domain (no scheme, no path)"),
                );
            }
        }
        let allowed_dirs = p.allowed_dirs.clone().unwrap_or_default();
        for (j, dir) in allowed_dirs.iter().enumerate() {
            if !dir.is_absolute() {
                self.invalid(
                    format!("{key}.allowed_dirs[{j}]"),
                    format!("{} must be an absolute path", dir.display()),
                );
            }
        }
        WasmSandbox {
            max_memory_mb,
            max_call_time,
            allowed_hosts,
            allowed_dirs,
        }
    }

    fn redis(&mut self, redis: RedisConfig) -> RedisConfig {
        if !redis.is_configured() {
            self.missing("redis.address", None, None);
        }
        if !redis.sentinel_addresses.is_empty() && redis.sentinel_master_name.is_empty() {
            self.missing(
                "redis.sentinel_master_name",
                None,
                Some("required with redis.sentinel_addresses"),
            );
        }
        if let Some(tls) = &redis.tls
            && tls.client_cert_file.is_empty() != tls.client_key_file.is_empty()
        {
            self.invalid(
                "redis.tls",
                "client_cert_file and client_key_file must be set together",
            );
        }
        if redis.use_tls {
            self.deprecated("redis.use_tls", "use redis.tls.enabled");
        }
        redis
    }

    fn logging(&mut self, mut logging: LoggingConfig, legacy_level: String) -> LoggingConfig {
        if !legacy_level.is_empty() {
            if logging.level.is_empty() {
                self.deprecated("log_level", "use logging.level");
                logging.level = legacy_level;
            } else {
                self.ignored(
                    "log_level",
                    "logging.level is also set and wins (log_level is deprecated)",
                );
            }
        }
        if logging.level.is_empty() {
            logging.level = DEFAULT_LOG_LEVEL.to_string();
        }
        logging.level = self.log_level("logging.level", &logging.level);
        let mut component_levels = std::mem::take(&mut logging.component_levels);
        for (component, level) in &mut component_levels {
            *level = self.log_level(&format!("logging.component_levels.{component}"), level);
        }
        logging.component_levels = component_levels;
        logging
    }

    /// Validate a level; zap accepts any case, so normalize to lower case.
    fn log_level(&mut self, key: &str, level: &str) -> String {
        let lower = level.to_ascii_lowercase();
        if !LOG_LEVELS.contains(&lower.as_str()) {
            self.invalid(
                key,
                format!("{level:?} is not one of {}", LOG_LEVELS.join(", ")),
            );
        }
        lower
    }

    fn check_ports(&mut self, ports: &[(&str, u16)]) {
        for (i, (key, port)) in ports.iter().enumerate() {
            if *port == 0 {
                continue;
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                self.invalid(*key, format!("port {port} is also used by {other}"));
            }
        }
    }

    /// Go's "<= 0 means the default" for counts; negative values earn a warning.
    fn positive_int(&mut self, key: &str, value: i64, default: u32) -> u32 {
        if value < 0 {
            self.warn(
                key,
                format!("{value} is negative, using the default {default}"),
            );
        }
        if value <= 0 {
            return default;
        }
        match u32::try_from(value) {
            Ok(v) => v,
            Err(_) => {
                self.invalid(key, format!("{value} is too large"));
                default
            }
        }
    }

    fn storage_sections(
        &mut self,
        storage: Option<StorageConfig>,
        backup: Option<StorageConfig>,
        legacy: [Option<Provider>; 4],
    ) -> (Option<StorageConfig>, Option<StorageConfig>) {
        let mut storage = storage;
        // Egress < 1.8.3 read the providers at the top level and used the first of
        // s3, azure, gcp, alioss; keep that meaning.
        let mut taken: Option<&'static str> = None;
        for provider in legacy.into_iter().flatten() {
            let name = provider.name();
            let slot_taken = storage.as_ref().is_some_and(|s| provider.is_set_in(s));
            if slot_taken {
                self.issues.push(ConfigIssue::Conflict {
                    first: name.to_string(),
                    second: format!("storage.{name}"),
                    message: format!("the top-level form is deprecated, keep only storage.{name}"),
                });
            } else if let Some(first) = taken {
                self.ignored(
                    name,
                    format!("the top-level {first} section takes precedence (legacy behaviour)"),
                );
            } else {
                self.deprecated(name, "move it under storage:");
                provider.put_into(storage.get_or_insert_with(StorageConfig::default));
                taken = Some(name);
            }
        }
        let storage = storage.map(|s| self.storage("storage", s));
        let backup = backup.map(|s| self.storage("backup", s));
        (storage, backup)
    }

    fn storage(&mut self, key: &str, mut s: StorageConfig) -> StorageConfig {
        self.one_provider(key, &s.providers());
        s.s3 = s.s3.map(|p| self.s3(&format!("{key}.s3"), p));
        s.azure = s.azure.map(|p| self.azure(&format!("{key}.azure"), p));
        s.gcp = s.gcp.map(|p| self.gcp(&format!("{key}.gcp"), p));
        s.alioss = s.alioss.map(|p| self.alioss(&format!("{key}.alioss"), p));
        s
    }

    fn debug(&mut self, mut d: DebugConfig) -> DebugConfig {
        if let Some(prefix) = d.legacy_path_prefix.take()
            && !prefix.is_empty()
        {
            if d.prefix.is_empty() {
                self.deprecated("debug.path_prefix", "use debug.prefix");
                d.prefix = prefix;
            } else {
                self.ignored(
                    "debug.path_prefix",
                    "debug.prefix is also set and wins (path_prefix is deprecated)",
                );
            }
        }
        let providers = d.storage().map(|s| s.providers()).unwrap_or_default();
        self.one_provider("debug", &providers);
        d.s3 = d.s3.map(|p| self.s3("debug.s3", p));
        d.azure = d.azure.map(|p| self.azure("debug.azure", p));
        d.gcp = d.gcp.map(|p| self.gcp("debug.gcp", p));
        d.alioss = d.alioss.map(|p| self.alioss("debug.alioss", p));
        d
    }

    fn one_provider(&mut self, key: &str, providers: &[&str]) {
        if providers.len() > 1 {
            self.invalid(
                key,
                format!(
                    "more than one provider is set ({}); set only one",
                    providers.join(", ")
                ),
            );
        }
    }

    fn s3(&mut self, key: &str, mut s3: S3Config) -> S3Config {
        s3.access_key = self.secret_or_env(s3.access_key, env::AWS_ACCESS_KEY_ID);
        s3.secret = self.secret_or_env(s3.secret, env::AWS_SECRET_ACCESS_KEY);
        s3.session_token = self.secret_or_env(s3.session_token, env::AWS_SESSION_TOKEN);
        s3.region = self.or_env(s3.region, env::AWS_DEFAULT_REGION);
        if let Some(url) = s3.legacy_proxy.take()
            && !url.is_empty()
        {
            if s3.proxy_config.is_none() {
                self.deprecated(
                    format!("{key}.proxy"),
                    format!("use {key}.proxy_config.url"),
                );
                s3.proxy_config = Some(ProxyConfig {
                    url,
                    ..ProxyConfig::default()
                });
            } else {
                self.ignored(
                    format!("{key}.proxy"),
                    format!("{key}.proxy_config is also set and wins"),
                );
            }
        }
        self.proxy(key, s3.proxy_config.as_ref());
        if s3.max_retries == 0 {
            s3.max_retries = DEFAULT_S3_MAX_RETRIES;
        }
        s3.max_retry_delay = or_default(s3.max_retry_delay, DEFAULT_S3_MAX_RETRY_DELAY);
        s3.min_retry_delay = or_default(s3.min_retry_delay, DEFAULT_S3_MIN_RETRY_DELAY);
        if s3.min_retry_delay > s3.max_retry_delay {
            self.invalid(
                format!("{key}.min_retry_delay"),
                format!(
                    "{} is longer than max_retry_delay ({})",
                    super::duration::format(s3.min_retry_delay),
                    super::duration::format(s3.max_retry_delay)
                ),
            );
        }
        if s3.bucket.is_empty() {
            self.missing(format!("{key}.bucket"), None, None);
        }
        s3
    }

    fn azure(&mut self, key: &str, mut azure: AzureConfig) -> AzureConfig {
        azure.account_name = self.or_env(azure.account_name, env::AZURE_STORAGE_ACCOUNT);
        azure.account_key = self.secret_or_env(azure.account_key, env::AZURE_STORAGE_KEY);
        if azure.container_name.is_empty() {
            self.missing(format!("{key}.container_name"), None, None);
        }
        azure
    }

    fn gcp(&mut self, key: &str, mut gcp: GcpConfig) -> GcpConfig {
        if gcp.credentials_json.is_empty() {
            gcp.credentials_file = self
                .env
                .get(env::GOOGLE_APPLICATION_CREDENTIALS)
                .map(Into::into);
        }
        self.proxy(key, gcp.proxy_config.as_ref());
        if gcp.bucket.is_empty() {
            self.missing(format!("{key}.bucket"), None, None);
        }
        gcp
    }

    fn alioss(&mut self, key: &str, alioss: AliOssConfig) -> AliOssConfig {
        if alioss.bucket.is_empty() {
            self.missing(format!("{key}.bucket"), None, None);
        }
        alioss
    }

    fn proxy(&mut self, key: &str, proxy: Option<&ProxyConfig>) {
        if let Some(proxy) = proxy
            && proxy.url.is_empty()
        {
            self.missing(
                format!("{key}.proxy_config.url"),
                None,
                Some("required when proxy_config is given"),
            );
        }
    }

    fn latency(&mut self, key: &str, l: &mut LatencyConfig) {
        l.jitter_buffer_latency =
            or_default(l.jitter_buffer_latency, DEFAULT_JITTER_BUFFER_LATENCY);
        l.audio_mixer_latency = or_default(l.audio_mixer_latency, DEFAULT_AUDIO_MIXER_LATENCY);
        l.pipeline_latency = or_default(l.pipeline_latency, DEFAULT_PIPELINE_LATENCY);
        l.rtp_max_allowed_ts_diff =
            or_default(l.rtp_max_allowed_ts_diff, DEFAULT_RTP_MAX_ALLOWED_TS_DIFF);
        // It must absorb a whole jitter buffer burst.
        l.rtp_max_allowed_ts_diff = l.rtp_max_allowed_ts_diff.max(l.jitter_buffer_latency);
        l.rtp_max_drift_adjustment =
            or_default(l.rtp_max_drift_adjustment, DEFAULT_RTP_MAX_DRIFT_ADJUSTMENT);
        l.old_packet_threshold = or_default(l.old_packet_threshold, DEFAULT_OLD_PACKET_THRESHOLD);
        let percent = l.rtp_drift_adjustment_window_percent;
        if !percent.is_finite() || percent < 0.0 {
            self.invalid(
                format!("{key}.rtp_drift_adjustment_window_percent"),
                format!("{percent} must be 0 or more"),
            );
        }
        if l.audio_mixer_latency <= l.jitter_buffer_latency {
            self.warn(
                format!("{key}.audio_mixer_latency"),
                format!(
                    "{} should be greater than jitter_buffer_latency ({})",
                    super::duration::format(l.audio_mixer_latency),
                    super::duration::format(l.jitter_buffer_latency)
                ),
            );
        }
    }

    /// `stream_reconnect:`: absent keys take the defaults; the delays must not contradict each
    /// other and the jitter is a fraction.
    fn stream_reconnect(&mut self, raw: RawStreamReconnect) -> StreamReconnect {
        let default = StreamReconnect::default();
        let pick = |v: Option<super::raw::GoDuration>, d: Duration| v.map_or(d, |v| v.0);
        let r = StreamReconnect {
            window: pick(raw.window, default.window),
            initial_delay: pick(raw.initial_delay, default.initial_delay),
            max_delay: pick(raw.max_delay, default.max_delay),
            min_interval: pick(raw.min_interval, default.min_interval),
            jitter: raw.jitter.unwrap_or(default.jitter),
            retry_srt: raw.retry_srt.unwrap_or(default.retry_srt),
        };
        if r.max_delay < r.initial_delay {
            self.invalid(
                "stream_reconnect.max_delay",
                format!(
                    "{} is less than initial_delay ({})",
                    super::duration::format(r.max_delay),
                    super::duration::format(r.initial_delay)
                ),
            );
        }
        if !(r.jitter.is_finite() && (0.0..=1.0).contains(&r.jitter)) {
            self.invalid(
                "stream_reconnect.jitter",
                format!("{} must be between 0 and 1", r.jitter),
            );
        }
        r
    }

    /// `streams:`: absent keys take the defaults; the Twitch ingest must be an RTMP(S) URL with
    /// `{stream_key}`, and streams need keyframes.
    fn streams(&mut self, raw: RawStreams) -> StreamsConfig {
        let default = StreamsConfig::default();
        let twitch_ingest = match raw.twitch_ingest {
            Some(t)
                if (t.starts_with("rtmp://") || t.starts_with("rtmps://"))
                    && t.contains("{stream_key}") =>
            {
                t
            }
            Some(t) => {
                self.invalid(
                    "streams.twitch_ingest",
                    format!("{t:?} must be an rtmp:// or rtmps:// URL containing {{stream_key}}"),
                );
                default.twitch_ingest
            }
            None => default.twitch_ingest,
        };
        let keyframe_interval = match raw.keyframe_interval {
            Some(d) if d.0.is_zero() => {
                self.invalid("streams.keyframe_interval", "0s: streams need keyframes");
                default.keyframe_interval
            }
            Some(d) => d.0,
            None => default.keyframe_interval,
        };
        StreamsConfig {
            twitch_ingest,
            keyframe_interval,
        }
    }

    /// `segments:`: absent keys take the defaults; a window must hold a segment and the
    /// uploads are bounded.
    fn segments(&mut self, raw: RawSegments) -> SegmentsConfig {
        let default = SegmentsConfig::default();
        let live_playlist_window = self.count(
            "segments.live_playlist_window",
            raw.live_playlist_window,
            default.live_playlist_window,
            u32::MAX,
        );
        let parallel_uploads = self.count(
            "segments.parallel_uploads",
            raw.parallel_uploads,
            default.parallel_uploads,
            MAX_SEGMENT_PARALLEL_UPLOADS,
        );
        SegmentsConfig {
            live_playlist_window,
            parallel_uploads,
        }
    }

    /// A count of at least 1 and at most `max` (the default when absent); an error naming
    /// `key` otherwise.
    fn count(&mut self, key: &str, raw: Option<i64>, default: u32, max: u32) -> u32 {
        let Some(v) = raw else {
            return default;
        };
        match u32::try_from(v) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ if max == u32::MAX => {
                self.invalid(key, format!("{v} must be at least 1"));
                default
            }
            _ => {
                self.invalid(key, format!("{v} must be between 1 and {max}"));
                default
            }
        }
    }

    fn audio_tempo(&mut self, mut a: AudioTempoController) -> AudioTempoController {
        let rate = a.adjustment_rate;
        if !(rate > 0.0 && rate <= MAX_AUDIO_TEMPO_ADJUSTMENT_RATE) {
            if rate != 0.0 {
                self.warn(
                    "audio_tempo_controller.adjustment_rate",
                    format!(
                        "{rate} is outside (0, {MAX_AUDIO_TEMPO_ADJUSTMENT_RATE}], using {DEFAULT_AUDIO_TEMPO_ADJUSTMENT_RATE}"
                    ),
                );
            }
            a.adjustment_rate = DEFAULT_AUDIO_TEMPO_ADJUSTMENT_RATE;
        }
        a
    }

    /// A cost: "<= 0 means the default" as in Go; negative values earn a warning.
    fn cost(&mut self, name: &str, value: f64, default: f64) -> f64 {
        let key = format!("cpu_cost.{name}");
        if !value.is_finite() {
            self.invalid(key, format!("{value} is not a number"));
            return default;
        }
        if value > 0.0 {
            return value;
        }
        if value < 0.0 {
            self.warn(
                key,
                format!("{value} is negative, using the default {default}"),
            );
        }
        default
    }

    /// A quantity where negative makes no sense and 0 means off.
    fn non_negative(&mut self, name: &str, value: f64) -> f64 {
        if !value.is_finite() || value < 0.0 {
            self.invalid(
                format!("cpu_cost.{name}"),
                format!("{value} must be 0 or more"),
            );
            return 0.0;
        }
        value
    }

    fn cpu_cost(&mut self, c: RawCpuCost) -> CpuCostConfig {
        let max_cpu_utilization = if c.max_cpu_utilization > 0.0 && c.max_cpu_utilization <= 1.0 {
            c.max_cpu_utilization
        } else {
            if c.max_cpu_utilization != 0.0 {
                self.warn(
                    "cpu_cost.max_cpu_utilization",
                    format!(
                        "{} is outside (0, 1], using {DEFAULT_MAX_CPU_UTILIZATION}",
                        c.max_cpu_utilization
                    ),
                );
            }
            DEFAULT_MAX_CPU_UTILIZATION
        };
        let max_memory = self.non_negative("max_memory", c.max_memory);
        let memory_cost = self.non_negative("memory_cost", c.memory_cost);
        let room_composite_cpu_cost = self.cost(
            "room_composite_cpu_cost",
            c.room_composite_cpu_cost,
            DEFAULT_ROOM_COMPOSITE_CPU_COST,
        );
        let audio_room_composite_cpu_cost = self.cost(
            "audio_room_composite_cpu_cost",
            c.audio_room_composite_cpu_cost,
            DEFAULT_AUDIO_ROOM_COMPOSITE_CPU_COST,
        );
        let sdk_audio_room_composite_cpu_cost = self.cost(
            "sdk_audio_room_composite_cpu_cost",
            c.sdk_audio_room_composite_cpu_cost,
            audio_room_composite_cpu_cost,
        );
        let sdk_audio_room_composite_memory_cost = self.cost(
            "sdk_audio_room_composite_memory_cost",
            c.sdk_audio_room_composite_memory_cost,
            memory_cost,
        );
        let web_cpu_cost = self.cost("web_cpu_cost", c.web_cpu_cost, DEFAULT_WEB_CPU_COST);
        let audio_web_cpu_cost = self.cost(
            "audio_web_cpu_cost",
            c.audio_web_cpu_cost,
            DEFAULT_AUDIO_WEB_CPU_COST,
        );
        let participant_cpu_cost = self.cost(
            "participant_cpu_cost",
            c.participant_cpu_cost,
            DEFAULT_PARTICIPANT_CPU_COST,
        );
        let track_composite_cpu_cost = self.cost(
            "track_composite_cpu_cost",
            c.track_composite_cpu_cost,
            DEFAULT_TRACK_COMPOSITE_CPU_COST,
        );
        let track_cpu_cost = self.cost("track_cpu_cost", c.track_cpu_cost, DEFAULT_TRACK_CPU_COST);
        let memory_source = if c.memory_source.is_empty() {
            MemorySource::default()
        } else {
            MemorySource::parse(&c.memory_source).unwrap_or_else(|| {
                self.invalid(
                    "cpu_cost.memory_source",
                    format!("{:?} is not one of proc_rss, cgroup", c.memory_source),
                );
                MemorySource::default()
            })
        };
        let cpu_kill_grace_sec = self.positive_int(
            "cpu_cost.cpu_kill_grace_sec",
            c.cpu_kill_grace_sec,
            DEFAULT_CPU_KILL_GRACE_SEC,
        );
        CpuCostConfig {
            max_cpu_utilization,
            max_memory,
            memory_cost,
            room_composite_cpu_cost,
            audio_room_composite_cpu_cost,
            sdk_audio_room_composite_cpu_cost,
            sdk_audio_room_composite_memory_cost,
            web_cpu_cost,
            audio_web_cpu_cost,
            participant_cpu_cost,
            track_composite_cpu_cost,
            track_cpu_cost,
            max_pulse_clients: if c.max_pulse_clients == 0 {
                DEFAULT_MAX_PULSE_CLIENTS
            } else {
                c.max_pulse_clients
            },
            memory_source,
            memory_kill_grace_sec: c.memory_kill_grace_sec,
            cpu_kill_grace_sec,
        }
    }
}

/// A top-level (legacy) storage provider section.
enum Provider {
    S3(Box<S3Config>),
    Azure(AzureConfig),
    Gcp(GcpConfig),
    AliOss(AliOssConfig),
}

impl Provider {
    fn name(&self) -> &'static str {
        match self {
            Provider::S3(_) => "s3",
            Provider::Azure(_) => "azure",
            Provider::Gcp(_) => "gcp",
            Provider::AliOss(_) => "alioss",
        }
    }

    fn is_set_in(&self, s: &StorageConfig) -> bool {
        match self {
            Provider::S3(_) => s.s3.is_some(),
            Provider::Azure(_) => s.azure.is_some(),
            Provider::Gcp(_) => s.gcp.is_some(),
            Provider::AliOss(_) => s.alioss.is_some(),
        }
    }

    fn put_into(self, s: &mut StorageConfig) {
        match self {
            Provider::S3(p) => s.s3 = Some(*p),
            Provider::Azure(p) => s.azure = Some(p),
            Provider::Gcp(p) => s.gcp = Some(p),
            Provider::AliOss(p) => s.alioss = Some(p),
        }
    }
}

/// `file`, `http-put`, `s3`: what `Descriptor::name` allows.
fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `example.com`, `example.com:8443`, `*.example.com`, `127.0.0.1:8080`, `[::1]:80`.
fn is_host_pattern(pattern: &str) -> bool {
    if pattern.contains("://") || pattern.contains(['/', '@', '?', '#', ' ']) {
        return false;
    }
    let rest = pattern.strip_prefix("*.").unwrap_or(pattern);
    let port_ok = |p: &str| p.parse::<u16>().is_ok();
    let host = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)) {
            return false;
        }
        addr
    } else {
        match rest.split_once(':') {
            Some((h, p)) if port_ok(p) => h,
            Some(_) => return false,
            None => rest,
        }
    };
    !host.is_empty()
}

fn or_default(value: Duration, default: Duration) -> Duration {
    if value.is_zero() { default } else { value }
}

/// `url` starts with `<scheme>://` and has something after it.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    url.split_once("://").is_some_and(|(scheme, rest)| {
        schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) && !rest.is_empty()
    })
}
