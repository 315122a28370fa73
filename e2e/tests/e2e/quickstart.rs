//! The README's quick start, on the example files as shipped (ports moved to free ones).

use gantry_testkit::echo::{self, EchoIdentity};
use gantry_testkit::harness::{Proxy, free_port, get_host};

fn example(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart/").to_owned() + name;
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn quickstart_routes_as_the_readme_says() {
    let mut backends = example("backends.yaml");
    for (port, name) in [(3001, "web-v1"), (3002, "web-v2"), (3003, "api")] {
        let identity = EchoIdentity {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            plain: false,
        };
        let (addr, _task) = echo::spawn("127.0.0.1:0".parse().expect("addr"), identity)
            .await
            .expect("echo backend");
        backends = backends.replace(&port.to_string(), &addr.port().to_string());
    }
    let port = free_port();
    let gateway = example("gateway.yaml").replace("port: 8080", &format!("port: {port}"));
    let proxy = Proxy::start_ready(
        &[
            ("gateway.yaml", &gateway),
            ("backends.yaml", &backends),
            ("routes.yaml", &example("routes.yaml")),
        ],
        &[],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");

    let mut v2 = 0;
    for _ in 0..200 {
        let echo = get_host(&format!("{base}/"), "www.example.com", &[])
            .await
            .expect("www")
            .echo();
        if echo.name == "web-v2" {
            v2 += 1;
        } else {
            assert_eq!(echo.name, "web-v1");
        }
    }
    assert!((5..=40).contains(&v2), "about 10% to web-v2, got {v2}/200");

    let canary = get_host(
        &format!("{base}/"),
        "www.example.com",
        &[("x-canary", "true")],
    )
    .await
    .expect("canary");
    assert_eq!(canary.echo().name, "web-v2");

    let api = get_host(&format!("{base}/v1/users"), "api.example.com", &[])
        .await
        .expect("api");
    assert_eq!(api.header("x-served-by"), Some("gantry"));
    let echo = api.echo();
    assert_eq!((echo.name.as_str(), echo.path.as_str()), ("api", "/users"));

    let old = get_host(&format!("{base}/old/users"), "api.example.com", &[])
        .await
        .expect("redirect");
    assert_eq!(old.status, 301);
    assert_eq!(
        old.header("location"),
        Some(format!("http://api.example.com:{port}/v1/users").as_str())
    );
    drop(proxy);
}
