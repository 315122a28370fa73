//! The admin dashboard (`/ui`) in real headless Chromium, against the real binary: every view
//! loads without a console error, the numbers it shows are those of `/metrics`, `/status` and
//! `/config`, a configuration change and a rejected file appear without reloading the page,
//! the back button and a pasted URL reach the same view, and the search box's answer is the
//! `explain` command's own. The screenshots in `docs/images/` are taken here
//! (`GANTRY_UPDATE_SCREENSHOTS=1` writes them there; otherwise to a temporary directory).

use std::path::PathBuf;
use std::process::Command;

use gantry_testkit::browser::Browser;
use gantry_testkit::harness::tempdir::TempDir;
use gantry_testkit::harness::{Proxy, echo_backends, gateway_yaml, get_host, proxy_bin};
use gantry_testkit::ports::free_port;
use serde_json::Value;

fn route(name: &str, host: &str, service: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"{host}\"]\n  rules:\n\
         \x20   - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n\
         \x20     backendRefs: [{{name: {service}, port: 8080}}]\n"
    )
}

/// Where screenshots go: `docs/images/` when asked to update them, else a temporary directory.
fn screenshots() -> (PathBuf, Option<TempDir>) {
    if std::env::var_os("GANTRY_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        (docs, None)
    } else {
        let dir = TempDir::new("gantry-ui-shots");
        (dir.path().to_path_buf(), Some(dir))
    }
}

/// Sum of every `gantry_requests_total` sample whose labels contain `labels`.
async fn requests(proxy: &Proxy, labels: &str) -> u64 {
    let text = gantry_testkit::harness::get(&format!("http://{}/metrics", proxy.admin))
        .await
        .expect("GET /metrics")
        .text();
    text.lines()
        .filter(|l| l.starts_with("gantry_requests_total{") && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn assert_png(png: &[u8], what: &str) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{what}: not a screenshot of a drawn page ({} bytes)",
        png.len()
    );
}

#[tokio::test]
async fn the_dashboard_shows_what_the_proxy_serves_and_follows_changes() {
    let (services, _) = echo_backends(&[("default", "web"), ("default", "api")]).await;
    let port = free_port();
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway_yaml("gw", port)),
            ("services.yaml", &services),
            ("web.yaml", &route("web", "web.example.com", "web")),
            ("api.yaml", &route("api", "api.example.com", "api")),
        ],
        &[],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}/");
    for _ in 0..7 {
        let reply = get_host(&base, "web.example.com", &[]).await.expect("web");
        assert_eq!(reply.status, 200);
    }
    for _ in 0..3 {
        let reply = get_host(&base, "api.example.com", &[]).await.expect("api");
        assert_eq!(reply.status, 200);
    }
    let web = requests(&proxy, "route=\"default/web\"").await;
    let all = requests(&proxy, "").await;
    assert_eq!(web, 7, "/metrics counts the web route's requests");
    let ui = format!("http://{}/ui", proxy.admin);
    let (shots, _keep) = screenshots();
    let mut browser = Browser::launch(1280, 800).await.expect("chromium starts");

    // Overview: the figures of /config, /status and /metrics.
    browser.navigate(&ui).await.expect("the dashboard loads");
    browser
        .wait_for(&format!(
            "document.querySelector('[data-field=requests]')?.textContent === '{all}'"
        ))
        .await
        .expect("the overview counts every request /metrics counts");
    let config = proxy.config().await;
    let status = proxy.status().await;
    let shown = browser
        .eval("({version: document.querySelector('[data-field=version]').textContent, routes: document.querySelector('[data-field=routes]').textContent, backends: document.querySelector('[data-field=backends]').textContent})")
        .await
        .expect("overview figures");
    assert_eq!(shown["version"], config["version"].to_string());
    let route_objects = status
        .as_array()
        .expect("status list")
        .iter()
        .filter(|o| o["kind"] == "HTTPRoute")
        .count();
    assert_eq!(shown["routes"], route_objects.to_string());
    assert_eq!(
        shown["backends"],
        config["ir"]["clusters"]
            .as_object()
            .expect("clusters")
            .len()
            .to_string()
    );
    assert_png(
        &browser
            .screenshot(&shots.join("dashboard-overview.png"))
            .await
            .expect("screenshot"),
        "overview",
    );

    // Routes, by the navigation link: each route's count is its /metrics count.
    browser
        .eval("document.querySelector('nav a[data-view=routes]').click()")
        .await
        .expect("click");
    let row = browser
        .wait_for(&format!(
            "location.pathname === '/ui/routes' && document.querySelector('[data-route=\"default/web\"] [data-field=requests]')?.textContent === '{web}' && document.querySelector('[data-route=\"default/api\"] [data-field=requests]')?.textContent === '3'"
        ))
        .await;
    row.expect("the routes view shows each route's request count");
    assert_png(
        &browser
            .screenshot(&shots.join("dashboard-routes.png"))
            .await
            .expect("screenshot"),
        "routes",
    );

    // The back button returns to the overview; a pasted URL opens a view directly.
    browser.eval("history.back()").await.expect("back");
    browser
        .wait_for("location.pathname === '/ui' && document.body.dataset.view === 'overview'")
        .await
        .expect("back returns to the overview");
    browser
        .navigate(&format!("{ui}/backends"))
        .await
        .expect("the backends view loads");
    let clusters: Vec<String> = config["ir"]["clusters"]
        .as_object()
        .expect("clusters")
        .keys()
        .cloned()
        .collect();
    let backend_check = clusters
        .iter()
        .map(|c| format!("document.querySelector('[data-backend=\"{c}\"] [data-endpoint]')"))
        .collect::<Vec<_>>()
        .join(" && ");
    browser
        .wait_for(&backend_check)
        .await
        .expect("every backend is listed with its endpoints");

    // The search box runs explain on the live configuration: the command's own answer.
    let request = format!("GET http://web.example.com:{port}/cart");
    browser
        .navigate(&format!("{ui}/gateways"))
        .await
        .expect("gateways view");
    browser
        .wait_for("document.querySelector('[data-gateway=\"default/gw\"] [data-listener]')")
        .await
        .expect("the Gateway and its listener are shown");
    assert_png(
        &browser
            .screenshot(&shots.join("dashboard-gateways.png"))
            .await
            .expect("screenshot"),
        "gateways",
    );
    browser
        .eval(&format!(
            "(() => {{ const f = document.getElementById('search'); f.elements.request.value = {}; f.requestSubmit(); }})()",
            serde_json::to_string(&request).expect("json")
        ))
        .await
        .expect("search");
    let text = browser
        .wait_for("location.pathname === '/ui/explain' && document.querySelector('[data-field=explanation]')?.textContent")
        .await
        .expect("the search box shows an explanation");
    let cli = Command::new(proxy_bin())
        .args(["explain", "--config-dir"])
        .arg(proxy.config_dir.path())
        .arg(&request)
        .output()
        .expect("gantry-proxy explain");
    assert_eq!(
        text.as_str().expect("text"),
        String::from_utf8_lossy(&cli.stdout),
        "the dashboard's explanation is the command's"
    );
    assert_eq!(
        browser
            .eval("document.querySelector('[data-field=explanation]').dataset.route")
            .await
            .expect("route"),
        Value::from("default/web")
    );
    assert_png(
        &browser
            .screenshot(&shots.join("dashboard-explain.png"))
            .await
            .expect("screenshot"),
        "explain",
    );

    // A new route appears without reloading the page, and so does a rejected file.
    browser
        .eval("document.querySelector('nav a[data-view=routes]').click()")
        .await
        .expect("click");
    browser
        .eval("window.__same_page = true")
        .await
        .expect("mark the page");
    let before = proxy.version().await;
    proxy.write("shop.yaml", &route("shop", "shop.example.com", "web"));
    proxy.wait_version_above(before).await;
    browser
        .wait_for("window.__same_page && document.querySelector('[data-route=\"default/shop\"]')")
        .await
        .expect("the new route appears in the open page");
    proxy.write("broken.yaml", "kind: HTTPRoute\nmetadata: [unclosed\n");
    let banner = browser
        .wait_for("window.__same_page && !document.getElementById('banner').hidden && document.getElementById('banner').textContent")
        .await
        .expect("the rejected file is shown");
    assert!(
        banner.as_str().expect("text").contains("broken.yaml"),
        "the banner names the file: {banner}"
    );
    browser
        .navigate(&format!("{ui}/reloads"))
        .await
        .expect("reloads view");
    browser
        .wait_for("document.querySelector('[data-reload=rejected]') && document.querySelector('[data-reload=applied]')")
        .await
        .expect("the reloads view lists the applied and the rejected change");
    assert_png(
        &browser
            .screenshot(&shots.join("dashboard-reloads.png"))
            .await
            .expect("screenshot"),
        "reloads",
    );

    let errors = browser.errors();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
}
