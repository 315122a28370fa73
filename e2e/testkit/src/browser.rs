//! Headless Chromium driven over the DevTools protocol (CDP), for tests of the admin
//! dashboard: open a page, evaluate script in it, wait for a condition the page reaches,
//! take screenshots, and collect every console error, uncaught exception and failed resource
//! load the page produced.
//!
//! Chromium is Debian's `chromium` (`.ci/packages`); `GANTRY_CHROMIUM` names another binary.
//! One browser process per [`Browser`], with its own profile directory, killed on drop.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::tempdir::TempDir;

/// How long any one step may take before the test fails with what it was waiting for.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Events read while waiting for a response, not yet looked at.
    events: VecDeque<Value>,
    /// Console errors, exceptions and failed loads, as text.
    errors: Vec<String>,
}

impl Browser {
    /// Starts Chromium with a blank page of `width` × `height` CSS pixels.
    pub async fn launch(width: u32, height: u32) -> anyhow::Result<Self> {
        let binary = std::env::var("GANTRY_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = TempDir::new("gantry-chromium");
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                // Tests may run as root, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting {binary} (Debian package chromium; .ci/install installs it)")
            })?;
        // Chromium says where its DevTools endpoint is on stderr once it listens.
        let stderr = child.stderr.take().context("chromium's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Ok(url.trim().to_owned());
                }
                seen.push(line);
            }
            Err(anyhow!("chromium exited: {}", seen.join("\n")))
        })
        .await
        .context("chromium did not open its DevTools endpoint")??;
        // Keep draining stderr so that chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let mut browser = Self {
            child,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
            events: VecDeque::new(),
            errors: Vec::new(),
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .context("a target id")?
            .to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("a session id")?
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await?;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        Ok(browser)
    }

    /// Opens `url` and returns once its `load` event fired.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
        let answer = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = answer["errorText"].as_str() {
            bail!("navigating to {url}: {error}");
        }
        self.event("Page.loadEventFired").await?;
        Ok(())
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(exception) = answer.get("exceptionDetails") {
            bail!("evaluating {expression}: {exception}");
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Waits until `condition` (a JavaScript expression) is truthy in the page, checked on
    /// the page's own event loop after every change of the document and at least every
    /// 50 ms, and returns its value.
    pub async fn wait_for(&mut self, condition: &str) -> anyhow::Result<Value> {
        let script = format!(
            "new Promise((resolve) => {{
               const check = () => {{ try {{ const v = ({condition}); if (v) {{ observer.disconnect(); resolve(v); return true; }} }} catch (e) {{}} return false; }};
               const observer = new MutationObserver(check);
               if (!check()) {{
                 observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
                 const timer = setInterval(() => {{ if (check()) clearInterval(timer); }}, 50);
               }}
             }})"
        );
        tokio::time::timeout(STEP_TIMEOUT, self.eval(&script))
            .await
            .map_err(|_| anyhow!("the page never satisfied: {condition}"))?
    }

    /// A PNG of the page as it is drawn now, written to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let answer = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(answer["data"].as_str().context("screenshot data")?)
            .context("screenshot base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &png).with_context(|| format!("writing {}", path.display()))?;
        Ok(png)
    }

    /// Every console error, uncaught exception and failed load so far.
    pub fn errors(&mut self) -> Vec<String> {
        let events: Vec<Value> = self.events.drain(..).collect();
        for event in &events {
            self.note(event);
        }
        self.errors.clone()
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.error: {}", params["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors.push(format!(
                    "exception: {}",
                    params["exceptionDetails"]["exception"]["description"]
                        .as_str()
                        .unwrap_or(&params["exceptionDetails"].to_string())
                ));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log: {} {}",
                    params["entry"]["text"].as_str().unwrap_or(""),
                    params["entry"]["url"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }

    /// Sends one command (to the page once attached) and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .with_context(|| format!("sending {method}"))?;
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let message = self.read().await?;
                if message["id"] == id {
                    if let Some(error) = message.get("error") {
                        bail!("{method}: {error}");
                    }
                    return Ok(message["result"].clone());
                }
                self.events.push_back(message);
            }
        })
        .await
        .map_err(|_| anyhow!("no answer to {method}"))?
    }

    /// Waits for the next event named `method` (or takes one already read).
    async fn event(&mut self, method: &str) -> anyhow::Result<Value> {
        if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
            return Ok(self.events.remove(at).expect("present"));
        }
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let message = self.read().await?;
                if message["method"] == method {
                    return Ok(message);
                }
                self.events.push_back(message);
            }
        })
        .await
        .map_err(|_| anyhow!("no {method} event"))?
    }

    async fn read(&mut self) -> anyhow::Result<Value> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error.into()),
                None => bail!("chromium closed the DevTools connection"),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
