//! `egress validate` end to end: run the real binary on the example configs and on broken
//! ones, and snapshot what it prints and its exit code.
//!
//! Paths are relative to the `host/` directory (the binary runs there), so snapshots hold no
//! machine-specific paths. Env variables the config layer reads are cleared for determinism.

use std::path::Path;
use std::process::Command;

const ENV_PREFIXES: [&str; 5] = ["EGRESS_", "LIVEKIT_", "AWS_", "AZURE_", "GOOGLE_"];

/// A `egress` command run from `host/` with a clean config environment.
fn egress() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_egress"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Exit code, stderr and stdout as one text.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run the egress binary");
    let code = out
        .status
        .code()
        .map_or_else(|| "signal".to_string(), |c| c.to_string());
    format!(
        "exit: {code}\n--- stderr\n{}--- stdout\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

fn validate(config: &str) -> String {
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(config).is_file(),
        "{config} exists"
    );
    run(egress().args(["validate", "--config", config]))
}

#[test]
fn example_egress() {
    insta::assert_snapshot!(validate("../deploy/examples/egress.yaml"));
}

#[test]
fn example_go_egress_sample() {
    insta::assert_snapshot!(validate("../deploy/examples/go-egress-sample.yaml"));
}

#[test]
fn example_doc_local() {
    insta::assert_snapshot!(validate("../deploy/examples/doc-local.yaml"));
}

#[test]
fn example_doc_full() {
    insta::assert_snapshot!(validate("../deploy/examples/doc-full.yaml"));
}

#[test]
fn example_legacy_flat() {
    insta::assert_snapshot!(validate("../deploy/examples/legacy-flat.yaml"));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(validate("tests/fixtures/wrong-type.yaml"));
}

#[test]
fn missing_required_keys() {
    insta::assert_snapshot!(validate("tests/fixtures/missing-required.yaml"));
}

#[test]
fn unknown_keys() {
    insta::assert_snapshot!(validate("tests/fixtures/unknown-keys.yaml"));
}

#[test]
fn invalid_values() {
    insta::assert_snapshot!(validate("tests/fixtures/invalid-values.yaml"));
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(validate("tests/fixtures/syntax-error.yaml"));
}

#[test]
fn no_config() {
    insta::assert_snapshot!(run(egress().arg("validate")));
}

#[test]
fn body_wins_over_file() {
    // The file is broken; the body is used, so validation succeeds.
    let body = "api_key: from-body\napi_secret: body-secret\nws_url: wss://body.example.com\n\
                redis:\n  address: body-redis:6379\n";
    let out = run(egress()
        .arg("validate")
        .env("EGRESS_CONFIG_BODY", body)
        .env("EGRESS_CONFIG_FILE", "tests/fixtures/wrong-type.yaml"));
    assert!(out.starts_with("exit: 0\n"), "{out}");
    assert!(out.contains("api_key: from-body\n"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn file_from_env() {
    let out = run(egress()
        .arg("validate")
        .env("EGRESS_CONFIG_FILE", "tests/fixtures/missing-required.yaml"));
    assert!(out.starts_with("exit: 2\n"), "{out}");
    assert!(
        out.contains("error: missing required key api_key (or set LIVEKIT_API_KEY)"),
        "{out}"
    );
}

#[test]
fn env_fallback_satisfies_required_keys() {
    let out = run(egress()
        .args(["validate", "--config", "tests/fixtures/env-fallback.yaml"])
        .env("LIVEKIT_API_KEY", "env-key")
        .env("LIVEKIT_API_SECRET", "env-secret")
        .env("LIVEKIT_WS_URL", "wss://env.example.com"));
    assert!(out.starts_with("exit: 0\n"), "{out}");
    assert!(out.contains("api_key: env-key\n"), "{out}");
    assert!(!out.contains("env-secret"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn secrets_never_printed() {
    for config in [
        "../deploy/examples/doc-full.yaml",
        "../deploy/examples/legacy-flat.yaml",
    ] {
        let out = validate(config);
        for secret in [
            "2Vd9kXq7LmP4sT8wZ1yB6nC3hJ5gF0aR",
            "redis-password-123",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "FwoGZXIvYXdzEXAMPLETOKEN",
            "proxy-password-456",
            "service_account",
            "bXlTdG9yYWdlQWNjb3VudEtleUVYQU1QTEU=",
            "old-api-secret",
            "old-redis-password",
            "AKIAOLDEXAMPLE",
            "old-s3-secret",
        ] {
            assert!(!out.contains(secret), "{config} leaked {secret}:\n{out}");
        }
    }
}

#[test]
fn plugins_builtin() {
    insta::assert_snapshot!(validate("tests/fixtures/plugins.yaml"));
}

#[test]
fn plugins_invalid() {
    insta::assert_snapshot!(validate("tests/fixtures/plugins-invalid.yaml"));
}

#[test]
fn plugins_unloadable() {
    insta::assert_snapshot!(validate("tests/fixtures/plugins-unloadable.yaml"));
}
