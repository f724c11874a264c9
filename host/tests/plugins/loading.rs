//! Start-up: what loads, what is refused and how the errors read. Includes a plugin written in
//! C against `egress_plugin.h`, and `egress validate` listing plugins from every loader.

use std::path::{Path, PathBuf};
use std::process::Command;

use egress_host::plugins::Source;
use egress_plugin_api::ObjectSpec;

use crate::support::{artifacts, compile_c, load, load_errors, q, service_yaml, workspace_root};

fn c_plugin(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let source = workspace_root().join("host/tests/plugins/c/null_sink.c");
    compile_c(&source, &dir.join(format!("lib{name}.so")), defines)
}

#[test]
fn a_c_plugin_loads_and_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let so = c_plugin(dir.path(), "cnull", &[]);
    let registry = load(&format!("  - dylib: {}\n", q(&so))).unwrap_or_else(|e| panic!("{e}"));
    let p = registry.get("c-null").expect("active under its own name");
    assert_eq!(
        (
            p.descriptor.version.as_str(),
            p.descriptor.api.to_string().as_str()
        ),
        ("0.0.1", "1.2")
    );
    assert!(p.descriptor.capabilities.streaming);
    assert_eq!(p.source, Source::Dylib(so.clone()));
    let sink = registry.sink("c-null").expect("sink");
    let receipt = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut o = sink.open(ObjectSpec::new("a/b")).await.expect("open");
            for _ in 0..10 {
                o.write(vec![7u8; 100_000].into()).await.expect("write");
            }
            o.finish().await.expect("finish")
        });
    assert_eq!(
        (receipt.location.as_str(), receipt.size),
        ("null:", 1_000_000)
    );

    let errors = load_errors(&format!(
        "  - dylib: {}\n    config: {{ mode: reject }}\n",
        q(&so)
    ));
    assert_eq!(
        errors,
        vec![format!(
            "plugins[0].config.mode (plugin c-null, dylib {}): rejected as asked",
            so.display()
        )]
    );
}

#[test]
fn abi_mismatches_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "major2",
            vec!["ABI_MAJOR=2", "ABI_MINOR=0"],
            "plugin API 2.0 has major version 2, this host speaks only 1.x",
        ),
        (
            "minor9",
            vec!["ABI_MINOR=9"],
            "plugin API 1.9 is newer than this host's 1.2",
        ),
        (
            "nowrite",
            vec!["NO_WRITE"],
            "the sink table has no `write` function",
        ),
        (
            "noentry",
            vec!["NO_ENTRY"],
            "does not export egress_plugin_entry_v1",
        ),
    ];
    for (name, defines, expected) in cases {
        let so = c_plugin(dir.path(), name, &defines);
        let errors = load_errors(&format!("  - dylib: {}\n", q(&so)));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!("plugins[0].dylib (dylib {}): ", so.display())),
            "{errors:?}"
        );
        assert!(errors[0].contains(expected), "{name}: {errors:?}");
    }
}

#[test]
fn start_up_errors_name_plugin_and_field() {
    let errors = load_errors(
        "  - builtin: file\n    config: { directory: 3 }\n\
         \x20 - builtin: ftp\n\
         \x20 - dylib: /nonexistent/libx.so\n\
         \x20 - wasm: /nonexistent/x.wasm\n",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("plugins[0].config.directory (plugin file, builtin file): invalid type"),
        "{}",
        errors[0]
    );
    assert!(errors[1].starts_with("plugins[1].builtin (builtin ftp): no plugin \"ftp\" is compiled into this egress (compiled in: azure, file, gcs, rtmp, s3"), "{}", errors[1]);
    assert_eq!(
        errors[2],
        "plugins[2].dylib (dylib /nonexistent/libx.so): /nonexistent/libx.so does not exist"
    );
    assert_eq!(
        errors[3],
        "plugins[3].wasm (wasm /nonexistent/x.wasm): /nonexistent/x.wasm does not exist"
    );
}

#[test]
fn duplicate_names_are_refused_unless_renamed() {
    let a = artifacts();
    let errors = load_errors(&format!(
        "  - builtin: file\n  - dylib: {}\n",
        q(&a.file_so)
    ));
    assert_eq!(
        errors,
        vec![format!(
            "plugins[1].name (plugin file, dylib {}): plugin name \"file\" is already used by plugins[0]; give one of them another name:",
            a.file_so.display()
        )]
    );
    let registry = load(&format!(
        "  - builtin: file\n  - dylib: {}\n    name: file-dylib\n  - wasm: {}\n    name: file-wasm\n",
        q(&a.file_so),
        q(&a.file_wasm)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = registry.active().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file", "file-dylib", "file-wasm"]);
    let e = registry
        .sink("s3")
        .err()
        .expect("s3 is not active")
        .to_string();
    assert!(
        e.starts_with(
            "no active sink plugin is named \"s3\" (active: file, file-dylib, file-wasm)"
        ),
        "{e}"
    );
}

#[test]
fn not_a_component_is_refused() {
    let a = artifacts();
    let errors = load_errors(&format!("  - wasm: {}\n", q(&a.file_so)));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("cannot compile"), "{errors:?}");
}

#[test]
fn without_plugins_key_builtins_that_need_no_settings_are_active() {
    let loaded = egress_host::config::parse(
        &service_yaml("").replace("plugins:\n", ""),
        &egress_host::config::EmptyEnv,
    )
    .expect("config");
    assert!(loaded.config.plugins.is_none());
    let registry = egress_host::plugins::PluginRegistry::load(None).expect("builtins load");
    let names: Vec<&str> = registry.active().iter().map(|p| p.name.as_str()).collect();
    // The storage sinks take their bucket per request, so they activate without settings; this
    // test binary also links the http-put example, which needs a url: not activated.
    assert_eq!(names, ["azure", "file", "gcs", "s3"]);
}

/// `egress validate` lists plugins from every loader with version and source; a broken plugin
/// config fails it with the field named.
#[test]
fn validate_lists_plugins_of_every_loader() {
    let a = artifacts();
    let dir = tempfile::tempdir().expect("temp dir");
    let body = service_yaml(&format!(
        "  - builtin: file\n    config: {{ directory: {} }}\n\
         \x20 - dylib: {}\n\
         \x20 - wasm: {}\n    max_memory_mb: 32\n    config: {{ authorization: hunter2, url: \"http://127.0.0.1:1/x\" }}\n    allowed_hosts: [127.0.0.1]\n",
        q(dir.path()),
        q(&a.testbed_so),
        q(&a.http_put_wasm),
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_egress"))
        .args(["validate", "--config-body", &body])
        .output()
        .expect("run egress validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("# active plugins:\n"), "{stdout}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout.contains(&format!("#   file      {version}  api 1.2  builtin\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "#   testbed   {version}  api 1.2  dylib {}\n",
            a.testbed_so.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "#   http-put  {version}  api 1.2  wasm {}\n",
            a.http_put_wasm.display()
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2"),
        "secrets are redacted: {stdout}"
    );
    assert!(stdout.contains("authorization: <redacted>"), "{stdout}");

    let broken = body.replace("http://127.0.0.1:1/x", "ftp://x");
    let out = Command::new(env!("CARGO_BIN_EXE_egress"))
        .args(["validate", "--config-body", &broken])
        .output()
        .expect("run egress validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: plugins[2].config.url (plugin http-put, wasm {}): scheme \"ftp\" is not http or https",
            a.http_put_wasm.display()
        )),
        "{stderr}"
    );
}
