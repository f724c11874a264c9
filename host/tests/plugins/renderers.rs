//! Layout renderers through every loader, by config alone: the example `solid-layout` as a
//! dylib and as a WASM component, a renderer written in C, the compiled-in `templates`; the
//! version rule, duplicate layouts, panics, the WASM time limit and `egress validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use egress_host::plugins::{PluginRegistry, Source};
use egress_plugin_api::blocking::block_on;
use egress_plugin_api::{RenderRequest, Rendering, RoomState, SinkError};

use crate::support::{artifacts, compile_c, load, load_errors, q, service_yaml, workspace_root};

const PAGE: &str = "http://127.0.0.1:9/page";

fn render(registry: &PluginRegistry, layout: &str) -> Result<Rendering, SinkError> {
    let active = registry
        .renderer_for(layout)
        .unwrap_or_else(|e| panic!("{e}"));
    // Renders run on plugin threads; any executor will do.
    block_on(active.renderer().render(
        &RenderRequest::new(layout, 1280, 720).with_template_base("http://localhost:7980/"),
        &RoomState::new("room", vec![]),
    ))
}

fn solid(loader: &str) -> &'static Path {
    let a = artifacts();
    if loader == "dylib" {
        &a.solid_so
    } else {
        &a.solid_wasm
    }
}

fn c_renderer(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let source = workspace_root().join("host/tests/plugins/c/solid_renderer.c");
    compile_c(&source, &dir.join(format!("lib{name}.so")), defines)
}

#[test]
fn solid_layout_renders_through_dylib_and_wasm() {
    for loader in ["dylib", "wasm"] {
        let path = solid(loader);
        let registry = load(&format!(
            "  - {loader}: {}\n    config: {{ url: \"{PAGE}\" }}\n",
            q(path)
        ))
        .unwrap_or_else(|e| panic!("{loader}: {e}"));
        let r = &registry.renderers()[0];
        assert_eq!(
            registry.renderers().len(),
            1,
            "{loader}: listing a renderer replaces templates"
        );
        assert_eq!(
            (r.name.as_str(), r.descriptor.api.to_string().as_str()),
            ("solid-layout", "1.2")
        );
        assert_eq!(r.layouts, ["solid-red", "solid-green", "solid-blue"]);
        let expected_source = if loader == "dylib" {
            Source::Dylib(path.to_path_buf())
        } else {
            Source::Wasm(path.to_path_buf())
        };
        assert_eq!(r.source, expected_source);
        assert!(
            registry.active().is_empty(),
            "{loader}: a renderer is not a sink"
        );
        assert_eq!(
            render(&registry, "solid-red").expect("renders"),
            Rendering::PageUrl(format!("{PAGE}?color=ff0000"))
        );
        assert_eq!(
            render(&registry, "solid-blue").expect("renders"),
            Rendering::PageUrl(format!("{PAGE}?color=0000ff"))
        );
        let unknown = registry
            .renderer_for("grid")
            .expect_err("templates is not listed")
            .to_string();
        assert!(
            unknown.starts_with("no active layout renderer serves layout \"grid\" (layouts: solid-blue, solid-green, solid-red)"),
            "{unknown}"
        );

        let errors = load_errors(&format!(
            "  - {loader}: {}\n    config: {{ url: \"ftp://x\" }}\n",
            q(path)
        ));
        assert_eq!(
            errors,
            [format!(
                "plugins[0].config.url (plugin solid-layout, {loader} {}): must be an http:// or https:// URL",
                path.display()
            )]
        );
    }
}

#[test]
fn templates_is_active_unless_renderers_are_listed() {
    let registry = PluginRegistry::load(None).expect("builtins");
    let names: Vec<&str> = registry
        .renderers()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["templates"]);
    for layout in ["grid", "speaker-light", "single-speaker"] {
        assert_eq!(
            render(&registry, layout).expect("renders"),
            Rendering::PageUrl(format!("http://localhost:7980/?layout={layout}"))
        );
    }
    // The empty layout is the default, served by whoever serves grid.
    assert_eq!(
        registry.renderer_for("").expect("default").name,
        "templates"
    );

    // A `plugins:` list without renderers still gets the bundled layouts.
    let registry = load("  - builtin: file\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registry.renderers()[0].name, "templates");
    // Listed next to another renderer, both serve.
    let registry = load(&format!(
        "  - builtin: templates\n  - dylib: {}\n    config: {{ url: \"{PAGE}\" }}\n",
        q(solid("dylib"))
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        registry.renderer_for("speaker").expect("bundled").name,
        "templates"
    );
    assert_eq!(
        registry.renderer_for("solid-red").expect("plugin").name,
        "solid-layout"
    );
    // A layout nobody claims goes to the bundled template, as in Go (its page draws it as
    // grid); the plugin's own layouts stay the plugin's.
    assert_eq!(
        registry
            .renderer_for("grid-4x4")
            .expect("Go passes any layout to its template")
            .name,
        "templates"
    );
    assert_eq!(
        render(&registry, "grid-4x4").expect("renders"),
        Rendering::PageUrl("http://localhost:7980/?layout=grid-4x4".into())
    );
}

#[test]
fn one_layout_two_renderers_fails_naming_both() {
    let errors = load_errors(&format!(
        "  - dylib: {}\n    config: {{ url: \"{PAGE}\" }}\n  - wasm: {}\n    name: solid-wasm\n    config: {{ url: \"{PAGE}\" }}\n",
        q(solid("dylib")),
        q(solid("wasm"))
    ));
    assert_eq!(errors.len(), 3, "one per shared layout: {errors:#?}");
    assert_eq!(
        errors[0],
        format!(
            "plugins[1] (plugin solid-wasm, wasm {}): layout \"solid-red\" is served by both renderer solid-layout (plugins[0]) and renderer solid-wasm (plugins[1]); a layout has one renderer: remove one of them",
            solid("wasm").display()
        )
    );
}

#[test]
fn a_c_renderer_loads_and_the_version_rule_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let so = c_renderer(dir.path(), "csolid", &[]);
    let registry = load(&format!("  - dylib: {}\n", q(&so))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        render(&registry, "c-solid").expect("renders"),
        Rendering::PageUrl("http://127.0.0.1:9/c-solid".into())
    );

    // A 1.0 plugin has no renderer field: the host does not read one, so this descriptor has
    // nothing it can use.
    let so = c_renderer(dir.path(), "minor0", &["ABI_MINOR=0"]);
    let errors = load_errors(&format!("  - dylib: {}\n", q(&so)));
    assert!(
        errors[0].ends_with("the descriptor has no sink, renderer or live destination table"),
        "{errors:?}"
    );
    let so = c_renderer(dir.path(), "minor9", &["ABI_MINOR=9"]);
    let errors = load_errors(&format!("  - dylib: {}\n", q(&so)));
    assert!(
        errors[0].contains("plugin API 1.9 is newer than this host's 1.2"),
        "{errors:?}"
    );
    let so = c_renderer(dir.path(), "norender", &["NO_RENDER"]);
    let errors = load_errors(&format!("  - dylib: {}\n", q(&so)));
    assert!(
        errors[0].ends_with("the renderer table has no `render` function"),
        "{errors:?}"
    );

    // A sink plugin built against header 1.0 (16-byte descriptor, minor 0) still loads.
    let sink = compile_c(
        &workspace_root().join("host/tests/plugins/c/null_sink.c"),
        &dir.path().join("libnull10.so"),
        &["ABI_MINOR=0", "V1_0_DESCRIPTOR"],
    );
    let registry = load(&format!("  - dylib: {}\n", q(&sink))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        registry
            .get("c-null")
            .expect("loaded")
            .descriptor
            .api
            .to_string(),
        "1.0"
    );
}

#[test]
fn renderer_panics_stop_at_the_boundary() {
    let registry = load(&format!(
        "  - dylib: {}\n    config: {{ url: \"{PAGE}\", panic_in: render }}\n",
        q(solid("dylib"))
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let e = render(&registry, "solid-red").expect_err("panics");
    assert!(e.is_permanent(), "{e}");
    assert!(
        e.message()
            .contains("plugin panicked: solid-layout: panic in render, as configured"),
        "{e}"
    );

    let registry = load(&format!(
        "  - wasm: {}\n    config: {{ url: \"{PAGE}\", panic_in: render }}\n",
        q(solid("wasm"))
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let e = render(&registry, "solid-red").expect_err("traps");
    assert!(e.message().contains("the plugin trapped"), "{e}");
    assert!(
        e.message().contains("solid-layout: panic in render"),
        "guest stderr is reported: {e}"
    );
    // The trap cost one instance: the renderer still answers another call the same way, and
    // the host is fine.
    assert!(render(&registry, "solid-red").is_err());

    for loader in ["dylib", "wasm"] {
        let errors = load_errors(&format!(
            "  - {loader}: {}\n    config: {{ url: \"{PAGE}\", panic_in: create }}\n",
            q(solid(loader))
        ));
        assert!(
            errors[0].starts_with("plugins[0].config (plugin solid-layout, "),
            "{errors:?}"
        );
        assert!(errors[0].contains("panic in create"), "{errors:?}");
    }
}

#[test]
fn a_spinning_wasm_renderer_hits_its_time_limit() {
    let registry = load(&format!(
        "  - wasm: {}\n    max_call_time: 300ms\n    config: {{ url: \"{PAGE}\", spin_in_render: true }}\n",
        q(solid("wasm"))
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let e = render(&registry, "solid-red").expect_err("interrupted");
    eprintln!("spinning render stopped after {:?}", started.elapsed());
    assert!(e.is_permanent(), "{e}");
    assert!(
        e.message()
            .contains("exceeded its time limit of 300ms per call"),
        "{e}"
    );
}

#[test]
fn validate_lists_renderers_with_layouts() {
    let a = artifacts();
    let body = service_yaml(&format!(
        "  - builtin: file\n  - builtin: templates\n  - wasm: {}\n    config: {{ url: \"{PAGE}\" }}\n",
        q(&a.solid_wasm)
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_egress"))
        .args(["validate", "--config-body", &body])
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
            "# active plugins:\n#   file  {version}  api 1.2  builtin\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "# active renderers:\n#   templates     {version}  api 1.2  builtin  layouts: grid, grid-dark, grid-light, speaker, speaker-dark, speaker-light, single-speaker, single-speaker-dark, single-speaker-light\n#   solid-layout  {version}  api 1.2  wasm {}  layouts: solid-red, solid-green, solid-blue\n",
            a.solid_wasm.display()
        )),
        "{stdout}"
    );
}
