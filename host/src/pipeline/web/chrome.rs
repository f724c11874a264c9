//! Chrome on the egress's X display, driven over the DevTools protocol with chromiumoxide.
//!
//! We start the Chrome process ourselves (rather than `Browser::launch`) so that it stays a
//! plain child in the handler's process group, is killed on drop, and its stderr keeps being
//! drained into `chrome.log` in the work dir; chromiumoxide then attaches to its DevTools
//! WebSocket with viewport emulation off, so the page fills the real window.
//!
//! Flags are the Go egress's (reference §5.1), plus `chrome_flags` from the config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::target::{CloseTargetParams, GetTargetsParams, TargetId};
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::PipelineError;

const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Navigation timeout and attempts (Go: 30 s, 3 tries on timeouts and two transient errors).
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(30);
const NAVIGATION_ATTEMPTS: usize = 3;
/// Longest a page evaluation may take before its result is ignored.
const EVALUATE_TIMEOUT: Duration = Duration::from_secs(2);
/// Chrome can be chatty on stderr; keep at most this much of it.
const MAX_LOG_BYTES: u64 = 20 * 1024 * 1024;

/// Playback latency Chrome asks PulseAudio for (see `launch`).
const PULSE_LATENCY_MSEC: &str = "30";

const START_RECORDING: &str = "START_RECORDING";
const END_RECORDING: &str = "END_RECORDING";

/// What the page says on its console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSignal {
    StartRecording,
    EndRecording,
}

pub struct ChromeOptions {
    pub display: String,
    pub width: i32,
    pub height: i32,
    pub pulse_server: String,
    pub pulse_sink: String,
    pub sandbox: bool,
    pub insecure: bool,
    pub extra_flags: BTreeMap<String, serde_yaml::Value>,
    pub work_dir: PathBuf,
}

pub struct Chrome {
    child: Child,
    browser: Browser,
    handler: JoinHandle<()>,
    page: Page,
    log_task: JoinHandle<()>,
}

/// The Chrome binary: `$EGRESS_CHROME_BIN`, else the first of the usual names on `PATH`.
fn chrome_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("EGRESS_CHROME_BIN").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome-stable",
            "google-chrome",
            "chrome",
        ] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// The command line, as the Go egress builds it (chromedp flags with `false` values omitted).
pub fn chrome_flags(o: &ChromeOptions, user_data_dir: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        // puppeteer's defaults
        "--disable-infobars",
        "--excludeSwitches=enable-automation",
        "--disable-background-networking",
        "--enable-features=NetworkService,NetworkServiceInProcess",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-breakpad",
        "--disable-client-side-phishing-detection",
        "--disable-default-apps",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-features=AudioServiceOutOfProcess,site-per-process,Translate,TranslateUI,BlinkGenPropertyTrees,WebUIOmniboxPopup,WebUIOmniboxAimPopup,OmniboxAimPopupWebUIContent,PreloadTopChromeWebUI",
        "--disable-hang-monitor",
        "--disable-ipc-flooding-protection",
        "--disable-popup-blocking",
        "--disable-prompt-on-repost",
        "--disable-renderer-backgrounding",
        "--disable-sync",
        "--force-color-profile=srgb",
        "--metrics-recording-only",
        "--safebrowsing-disable-auto-update",
        "--password-store=basic",
        "--use-mock-keychain",
        // the egress's own
        "--kiosk",
        // Software compositing in the browser process: one process (~25 MB) less.
        "--in-process-gpu",
        "--disable-translate",
        "--autoplay-policy=no-user-gesture-required",
        "--window-position=0,0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.push(format!("--window-size={},{}", o.width, o.height));
    if o.insecure {
        flags.push("--disable-web-security".into());
        flags.push("--allow-running-insecure-content".into());
    }
    if !o.sandbox {
        flags.push("--no-sandbox".into());
    }
    flags.push(format!("--display={}", o.display));
    for (name, value) in &o.extra_flags {
        let name = name.trim_start_matches('-');
        match value {
            serde_yaml::Value::Bool(true) | serde_yaml::Value::Null => {
                flags.push(format!("--{name}"))
            }
            serde_yaml::Value::Bool(false) => {
                flags.retain(|f| f != &format!("--{name}") && !f.starts_with(&format!("--{name}=")))
            }
            serde_yaml::Value::String(s) => flags.push(format!("--{name}={s}")),
            serde_yaml::Value::Number(n) => flags.push(format!("--{name}={n}")),
            other => {
                tracing::warn!(flag = name, value = ?other, "chrome_flags value is not a scalar; ignored");
            }
        }
    }
    flags.push(format!("--user-data-dir={}", user_data_dir.display()));
    flags.push("--remote-debugging-port=0".into());
    flags.push("about:blank".into());
    flags
}

/// Closes the tab Chrome opened at start: its renderer process would otherwise idle beside the
/// recorded page for the whole egress (tens of MB).
async fn close_other_tabs(browser: &Browser, keep: &TargetId) {
    let Ok(targets) = browser.execute(GetTargetsParams::default()).await else {
        return;
    };
    for t in &targets.result.target_infos {
        if t.r#type == "page" && &t.target_id != keep {
            let _ = browser
                .execute(CloseTargetParams::new(t.target_id.clone()))
                .await;
        }
    }
}

fn chrome_error(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Chrome(format!("chrome failed to start: {e}"))
}

impl Chrome {
    /// Starts Chrome and attaches to it. Console signals go to `signals` once a page is loaded.
    pub async fn launch(
        o: &ChromeOptions,
        signals: mpsc::UnboundedSender<PageSignal>,
    ) -> Result<Chrome, PipelineError> {
        let bin =
            chrome_binary().ok_or_else(|| chrome_error("no chromium binary found on PATH"))?;
        let user_data_dir = o.work_dir.join("chrome-profile");
        std::fs::create_dir_all(&user_data_dir).map_err(chrome_error)?;
        let mut cmd = Command::new(&bin);
        cmd.args(chrome_flags(o, &user_data_dir))
            .env("DISPLAY", &o.display)
            .env("PULSE_SERVER", &o.pulse_server)
            .env("PULSE_SINK", &o.pulse_sink)
            // A null sink runs at the smallest latency its clients ask for, and Chrome asks
            // for ~2 s: the monitor then delivers in 2 s blocks and recording starts late.
            // libpulse caps Chrome's request with this.
            .env("PULSE_LATENCY_MSEC", PULSE_LATENCY_MSEC)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(chrome_error)?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| chrome_error("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut log = tokio::fs::File::create(o.work_dir.join("chrome.log"))
            .await
            .map_err(chrome_error)?;

        // Chrome prints "DevTools listening on ws://…" once it is ready.
        let found = tokio::time::timeout(LAUNCH_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                if let Some((_, ws)) = line.split_once("DevTools listening on ") {
                    return Some(ws.trim().to_owned());
                }
            }
            None
        })
        .await;
        let ws_url = match found {
            Ok(Some(ws)) => ws,
            other => {
                let _ = child.start_kill();
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let why = if other.is_err() {
                    "timed out"
                } else {
                    "exited"
                };
                return Err(chrome_error(format!(
                    "{why} before DevTools was ready ({status}); see chrome.log"
                )));
            }
        };
        tracing::debug!("chrome: devtools ready");
        let log_task = tokio::spawn(async move {
            let mut written = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                if written < MAX_LOG_BYTES {
                    written += line.len() as u64 + 1;
                    let _ = log.write_all(format!("{line}\n").as_bytes()).await;
                }
            }
        });

        let config = HandlerConfig {
            viewport: None,
            ..HandlerConfig::default()
        };
        let (browser, mut handler) = match Browser::connect_with_config(ws_url, config).await {
            Ok(pair) => pair,
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                log_task.abort();
                return Err(chrome_error(e));
            }
        };
        // The handler future drives the whole CDP connection; it ends when Chrome goes away.
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });

        tracing::debug!("chrome: devtools connected");
        // A new tab rather than the one Chrome opened: chromiumoxide tracks frames and
        // execution contexts only for pages it saw from the start, and `evaluate` on the
        // initial tab hung waiting for a context.
        let page = match browser.new_page("about:blank").await {
            Ok(p) => p,
            Err(e) => {
                handler.abort();
                let _ = child.start_kill();
                let _ = child.wait().await;
                log_task.abort();
                return Err(chrome_error(e));
            }
        };
        close_other_tabs(&browser, page.target_id()).await;
        let chrome = Chrome {
            child,
            browser,
            handler,
            page,
            log_task,
        };
        chrome.listen(signals).await?;
        tracing::debug!("chrome: page ready");
        Ok(chrome)
    }

    async fn listen(
        &self,
        signals: mpsc::UnboundedSender<PageSignal>,
    ) -> Result<(), PipelineError> {
        let mut console = self
            .page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .map_err(chrome_error)?;
        tokio::spawn(async move {
            while let Some(ev) = console.next().await {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let text: Vec<String> = ev
                        .args
                        .iter()
                        .map(|a| match a.value.as_ref() {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => a.description.clone().unwrap_or_default(),
                        })
                        .collect();
                    let text = text.join(" ");
                    tracing::debug!(target: "chrome_console", "{}", text.chars().take(500).collect::<String>());
                }
                for arg in &ev.args {
                    let signal = match arg.value.as_ref().and_then(|v| v.as_str()) {
                        Some(START_RECORDING) => PageSignal::StartRecording,
                        Some(END_RECORDING) => PageSignal::EndRecording,
                        _ => continue,
                    };
                    tracing::info!("chrome: {signal:?}");
                    let _ = signals.send(signal);
                }
            }
        });
        let mut exceptions = self
            .page
            .event_listener::<EventExceptionThrown>()
            .await
            .map_err(chrome_error)?;
        tokio::spawn(async move {
            while let Some(ev) = exceptions.next().await {
                tracing::debug!(text = %ev.exception_details.text, "chrome exception");
            }
        });
        let mut crashes = self
            .page
            .event_listener::<EventTargetCrashed>()
            .await
            .map_err(chrome_error)?;
        tokio::spawn(async move {
            while crashes.next().await.is_some() {
                tracing::error!("chrome crashed");
            }
        });
        Ok(())
    }

    /// Loads `url`: page load errors (HTTP status ≥ 400, network errors, timeouts) and a
    /// `div.error` on the loaded page are the Go egress's errors.
    pub async fn navigate(&self, url: &str) -> Result<(), PipelineError> {
        let mut last = PipelineError::PageLoad("timed out".into());
        for attempt in 0..NAVIGATION_ATTEMPTS {
            if attempt > 0 {
                tracing::debug!(attempt, "navigation failed, reloading");
            }
            let (err, retryable) =
                match tokio::time::timeout(NAVIGATION_TIMEOUT, self.page.goto(url)).await {
                    Err(_) => (PipelineError::PageLoad("timed out".into()), true),
                    Ok(Err(CdpError::Timeout)) => {
                        (PipelineError::PageLoad("timed out".into()), true)
                    }
                    Ok(Err(e)) => {
                        let text = e.to_string();
                        let retryable = text.contains("net::ERR_CERT_VERIFIER_CHANGED")
                            || text.contains("net::ERR_CONNECTION_CLOSED");
                        (PipelineError::PageLoad(text), retryable)
                    }
                    Ok(Ok(_)) => return self.check_loaded().await,
                };
            last = err;
            if !retryable {
                break;
            }
        }
        Err(last)
    }

    async fn check_loaded(&self) -> Result<(), PipelineError> {
        if let Ok(Ok(Some(request))) =
            tokio::time::timeout(EVALUATE_TIMEOUT, self.page.wait_for_navigation_response()).await
            && let Some(response) = &request.response
            && response.status >= 400
        {
            let text = if response.status_text.is_empty() {
                response.status.to_string()
            } else {
                response.status_text.clone()
            };
            return Err(PipelineError::PageLoad(text));
        }
        match self.error_text().await {
            Some(text) => Err(PipelineError::Template(text)),
            None => Ok(()),
        }
    }

    /// The text of the page's `div.error`, if it shows one (templates report connection
    /// failures this way).
    pub async fn error_text(&self) -> Option<String> {
        let js = "(() => { const e = document.querySelector('div.error'); return e ? e.innerText : ''; })()";
        // Never let a stuck DevTools call hold up the controller.
        let result = tokio::time::timeout(EVALUATE_TIMEOUT, self.page.evaluate(js))
            .await
            .ok()?;
        let text: String = result.ok()?.into_value().ok()?;
        (!text.is_empty()).then_some(text)
    }

    /// Whether the Chrome process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub async fn close(mut self) {
        // A polite close first so Chrome flushes nothing it does not need to; then make sure.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.handler.abort();
        self.log_task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ChromeOptions {
        ChromeOptions {
            display: ":7".into(),
            width: 1280,
            height: 720,
            pulse_server: "unix:/x".into(),
            pulse_sink: "EG_1".into(),
            sandbox: false,
            insecure: false,
            extra_flags: BTreeMap::new(),
            work_dir: PathBuf::from("/w"),
        }
    }

    #[test]
    fn flags_follow_the_go_egress() {
        let mut o = options();
        let f = chrome_flags(&o, Path::new("/w/p"));
        for want in [
            "--kiosk",
            "--no-sandbox",
            "--window-size=1280,720",
            "--display=:7",
            "--disable-gpu",
            "--autoplay-policy=no-user-gesture-required",
            "--user-data-dir=/w/p",
        ] {
            assert!(f.contains(&want.to_string()), "missing {want}: {f:?}");
        }
        assert!(
            !f.iter()
                .any(|x| x == "--disable-web-security" || x == "--enable-automation")
        );
        assert!(
            f.iter().all(|x| !x.starts_with("----")),
            "no doubled dashes"
        );
        o.sandbox = true;
        o.insecure = true;
        o.extra_flags
            .insert("kiosk".into(), serde_yaml::Value::Bool(false));
        o.extra_flags
            .insert("lang".into(), serde_yaml::Value::String("fr".into()));
        let f = chrome_flags(&o, Path::new("/w/p"));
        assert!(!f.contains(&"--no-sandbox".to_string()));
        assert!(
            !f.contains(&"--kiosk".to_string()),
            "a false custom flag removes it"
        );
        assert!(f.contains(&"--disable-web-security".to_string()));
        assert!(f.contains(&"--lang=fr".to_string()));
    }
}
