//! The service's HTTP endpoints: health (health_port), metrics (prometheus_port) and the
//! room-composite templates (template_port). Each is off when its port is 0, as in Go.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

use super::Shared;

/// Health: 200 while this worker can take work, 503 while draining or cut off from Redis.
/// The body is the Go egress's status JSON (`CpuLoad` = available cores, plus one key per
/// active egress) with a `status` field saying why when unhealthy.
async fn health(shared: Arc<Shared>) -> impl IntoResponse {
    let w = &shared.worker;
    let mut body = serde_json::Map::new();
    body.insert("CpuLoad".into(), serde_json::json!(w.available_cpu()));
    for id in w.active_ids() {
        body.insert(id, serde_json::json!({}));
    }
    let (code, status) = if w.is_terminating() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !w.is_connected() {
        (StatusCode::SERVICE_UNAVAILABLE, "redis disconnected")
    } else if !w.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    } else {
        (StatusCode::OK, "ok")
    };
    body.insert("status".into(), serde_json::json!(status));
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Object(body).to_string(),
    )
}

async fn metrics(shared: Arc<Shared>) -> impl IntoResponse {
    let text = shared
        .metrics
        .render(&shared.worker, shared.config.cpu_cost.web_cpu_cost);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn bind(port: u16, what: &str, local_only: bool) -> std::io::Result<TcpListener> {
    let ip = if local_only {
        [127, 0, 0, 1]
    } else {
        [0, 0, 0, 0]
    };
    let addr = SocketAddr::from((ip, port));
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what} port {port}: {e}")))
}

fn serve(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
}

/// Binds every configured port before returning, so a port conflict fails start-up loudly.
pub async fn start(shared: Arc<Shared>, templates_dir: PathBuf) -> std::io::Result<()> {
    let config = shared.config.clone();
    if config.health_port != 0 {
        let listener = bind(config.health_port, "health", false).await?;
        let s = shared.clone();
        serve(listener, Router::new().fallback(move || health(s.clone())));
    }
    if config.prometheus_port != 0 {
        let listener = bind(config.prometheus_port, "prometheus", false).await?;
        let s = shared.clone();
        serve(listener, Router::new().fallback(move || metrics(s.clone())));
    }
    if config.template_port != 0 {
        // Chrome loads templates from localhost only, as the Go egress serves them.
        let listener = bind(config.template_port, "template", true).await?;
        if !templates_dir.is_dir() {
            tracing::warn!(dir = %templates_dir.display(), "templates directory not found; template server will answer 404");
        }
        serve(
            listener,
            Router::new().fallback_service(ServeDir::new(templates_dir)),
        );
    }
    Ok(())
}
