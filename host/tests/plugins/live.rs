//! Live destinations (API 1.2) at start-up: the compiled-in `rtmp` and `srt` are active by
//! default and stay active beside a `plugins:` list that names none, a scheme has one
//! destination (two claiming it fail start-up naming both), bad configs name their field, and
//! `egress validate` lists them with their schemes. (Publishing itself, through the builtin
//! and the dylib loader: `tests/tests/live_destinations.rs`, against mediamtx.)

use std::process::Command;

use egress_host::plugins::{PluginError, PluginRegistry, Source};

use crate::support::{compile_c, load, load_errors, q, workspace_root};

fn schemes(registry: &PluginRegistry, scheme: &str) -> Result<String, PluginError> {
    registry.live_for_scheme(scheme).map(|l| l.name.clone())
}

#[test]
fn rtmp_and_srt_serve_their_schemes_by_default() {
    let registry = PluginRegistry::load(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schemes(&registry, "rtmp").unwrap(), "rtmp");
    assert_eq!(schemes(&registry, "RTMPS").unwrap(), "rtmp");
    assert_eq!(schemes(&registry, "srt://").unwrap(), "srt");
    let rtmp = registry.live_for_scheme("rtmp").unwrap();
    assert_eq!(rtmp.source, Source::Builtin);
    assert_eq!(rtmp.descriptor.api.to_string(), "1.2");
    assert!(rtmp.factory().validate_url("rtmp://h/live/key").is_ok());
    let e = rtmp.factory().validate_url("rtmp://h/key").unwrap_err();
    assert!(e.is_config(), "{e}");
    let e = schemes(&registry, "ws").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no active live destination serves ws:// URLs (served: rtmp, rtmps, srt); build egress with its plugin (cargo features `rtmp`, `srt`) or add it to plugins:"
    );
}

#[test]
fn a_plugins_list_without_live_destinations_keeps_the_compiled_in_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = load(&format!(
        "  - builtin: file\n    config: {{ directory: {:?} }}\n",
        dir.path().display().to_string()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schemes(&registry, "rtmps").unwrap(), "rtmp");
    assert_eq!(schemes(&registry, "srt").unwrap(), "srt");
    // One that names a live destination gets exactly those.
    let registry = load("  - builtin: srt\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schemes(&registry, "srt").unwrap(), "srt");
    assert!(schemes(&registry, "rtmp").is_err());
}

#[test]
fn two_destinations_for_one_scheme_fail_naming_both() {
    let errors = load_errors("  - builtin: rtmp\n  - builtin: rtmp\n    name: rtmp-backup\n");
    assert_eq!(
        errors,
        vec![
            "plugins[1] (plugin rtmp-backup, builtin): schemes \"rtmp\", \"rtmps\" are served by both live destination rtmp (plugins[0]) and live destination rtmp-backup (plugins[1]); a scheme has one destination: remove one of them".to_string(),
        ]
    );
}

#[test]
fn bad_live_configs_name_the_field() {
    let errors = load_errors("  - builtin: rtmp\n    config: { connect_timeout_ms: 0 }\n");
    assert_eq!(
        errors,
        vec![
            "plugins[0].config.connect_timeout_ms (plugin rtmp, builtin rtmp): must be at least 1"
                .to_string()
        ]
    );
    let errors = load_errors("  - builtin: srt\n    config: { sendtimeout: 5 }\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "plugins[0].config.sendtimeout (plugin srt, builtin srt): unknown field `sendtimeout`"
        ),
        "{errors:?}"
    );
}

#[test]
fn egress_validate_lists_live_destinations() {
    let body = "api_key: k\napi_secret: s\nws_url: ws://localhost:7880\nredis:\n  address: localhost:6379\n";
    let out = Command::new(env!("CARGO_BIN_EXE_egress"))
        .args(["validate", "--config-body", body])
        .output()
        .expect("run egress validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout.contains(&format!(
            "# active live destinations:\n#   rtmp  {version}  api 1.2  builtin  schemes: rtmp, rtmps  format: flv\n#   srt   {version}  api 1.2  builtin  schemes: srt  format: mpegts\n"
        )),
        "{stdout}"
    );
}

/// A plugin built against header 1.1 (24-byte descriptor, no `live` field, minor 1) still
/// loads: the host reads `live` only from a minor-2 descriptor that is large enough.
#[test]
fn a_plugin_built_for_1_1_still_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let so = compile_c(
        &workspace_root().join("host/tests/plugins/c/null_sink.c"),
        &dir.path().join("libnull11.so"),
        &["ABI_MINOR=1", "V1_1_DESCRIPTOR"],
    );
    let registry = load(&format!(
        "  - dylib: {}
",
        q(&so)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let p = registry.get("c-null").expect("loaded");
    assert_eq!(p.descriptor.api.to_string(), "1.1");
    assert_eq!(p.source, Source::Dylib(so));
    // Its sink is all it offers: no live destination came from reading past its descriptor.
    assert!(registry.live().iter().all(|l| l.source == Source::Builtin));
}
