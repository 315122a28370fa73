//! haproxy configuration equivalent to the Gantry routes: a map from host + path prefix to
//! one backend, with connection reuse to the backend server.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::config::{host, path};
use super::protocols::Ports;

/// `haproxy.cfg` for `threads` threads on `port`, routing through the map file `map`.
pub fn config(map: &Path, port: u16, backend: SocketAddr, threads: usize) -> String {
    format!(
        r#"{head}frontend bench
  bind 127.0.0.1:{port}
  # `base` is the Host header followed by the path: a prefix match on it is a host + path
  # prefix match, looked up in a prefix tree.
  use_backend app if {{ base,map_beg({map}) -m found }}
  default_backend not_found
backend app
  http-reuse always
  server backend {backend}
backend not_found
  http-request return status 404
"#,
        head = head(threads),
        map = map.display()
    )
}

/// `haproxy.cfg` for the HTTP/2 and TLS scenario: every request to `backend`, on
/// `ports.plain` (HTTP/1.1), `ports.h2c` (HTTP/2 with prior knowledge) and `ports.tls` (TLS,
/// ALPN `h2` or `http/1.1`, certificate and key both in the PEM file `pem`).
pub fn protocols_config(ports: Ports, backend: SocketAddr, threads: usize, pem: &Path) -> String {
    format!(
        r#"{head}frontend bench
  bind 127.0.0.1:{plain}
  bind 127.0.0.1:{h2c} proto h2
  bind 127.0.0.1:{tls} ssl crt {pem} alpn h2,http/1.1
  default_backend app
backend app
  http-reuse always
  server backend {backend}
"#,
        plain = ports.plain,
        h2c = ports.h2c,
        tls = ports.tls,
        pem = pem.display(),
        head = head(threads),
    )
}

/// Threads, connection limit, HTTP mode with keep-alive and timeouts.
fn head(threads: usize) -> String {
    format!(
        r#"global
  nbthread {threads}
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
"#
    )
}

/// The map file: one `host/path backend` line per route.
pub fn map(routes: usize) -> String {
    let mut s = String::new();
    for i in 0..routes {
        let _ = writeln!(s, "{}{} app", host(i), path(i));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_map_line_per_route() {
        let m = super::map(2);
        assert_eq!(
            m,
            "r0.bench.example.com/svc0 app\nr1.bench.example.com/svc1 app\n"
        );
        let backend = "127.0.0.1:3000".parse().expect("addr");
        let cfg = super::config(std::path::Path::new("/tmp/r.map"), 8080, backend, 2);
        assert!(cfg.contains("map_beg(/tmp/r.map)"));
        assert!(cfg.contains("http-reuse always"));
        assert!(cfg.contains("nbthread 2"));
    }

    #[test]
    fn protocols_bind_three_ports() {
        let backend = "127.0.0.1:3000".parse().expect("addr");
        let ports = super::Ports {
            plain: 8080,
            h2c: 8081,
            tls: 8443,
        };
        let cfg = super::protocols_config(ports, backend, 2, std::path::Path::new("/p.pem"));
        assert!(cfg.contains("bind 127.0.0.1:8080\n"));
        assert!(cfg.contains("bind 127.0.0.1:8081 proto h2\n"));
        assert!(cfg.contains("bind 127.0.0.1:8443 ssl crt /p.pem alpn h2,http/1.1\n"));
        assert!(cfg.contains("server backend 127.0.0.1:3000"));
    }
}
