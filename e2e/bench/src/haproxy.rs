//! haproxy configuration equivalent to the Gantry routes: a map from host + path prefix to
//! one backend, with connection reuse to the backend server.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::config::{host, path};

/// `haproxy.cfg` for `threads` threads on `port`, routing through the map file `map`.
pub fn config(map: &Path, port: u16, backend: SocketAddr, threads: usize) -> String {
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
frontend bench
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
        map = map.display()
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
}
