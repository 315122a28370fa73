//! nginx configuration equivalent to the Gantry routes: one `server` per host, one prefix
//! `location` each, all proxying to one upstream with keepalive.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::config::{host, path};
use super::protocols::Ports;

/// `nginx.conf` for `routes` routes on `port`, with `workers` worker processes and every file
/// nginx writes kept under `dir`. With `access_log`, one line per request in `dir/access.log`,
/// buffered as Gantry buffers its own (32 KiB, flushed every 100 ms).
pub fn config(
    dir: &Path,
    port: u16,
    backend: SocketAddr,
    routes: usize,
    workers: usize,
    access_log: bool,
) -> String {
    let mut s = preamble(dir, backend, workers, access_log);
    let _ = write!(
        s,
        r#"  # No route matched: 404, as Gantry answers.
  server {{
    listen 127.0.0.1:{port} default_server reuseport;
    return 404;
  }}
"#
    );
    for i in 0..routes {
        let _ = writeln!(
            s,
            "  server {{ listen 127.0.0.1:{port}; server_name {}; location {} {{ proxy_pass http://backend; }} }}",
            host(i),
            path(i)
        );
    }
    s.push_str("}\n");
    s
}

/// `nginx.conf` for the HTTP/2 and TLS scenario: one route (`host` and the path prefix
/// `path`) served on `ports.plain` (HTTP/1.1), `ports.h2c` (HTTP/2 with prior knowledge) and
/// `ports.tls` (TLS, ALPN `h2` or `http/1.1`) with the certificate and key in `cert` and `key`.
pub fn protocols_config(
    dir: &Path,
    ports: Ports,
    backend: SocketAddr,
    workers: usize,
    (cert, key): (&Path, &Path),
    (host, path): (&str, &str),
) -> String {
    let mut s = preamble(dir, backend, workers, false);
    let location = format!("server_name {host}; location {path} {{ proxy_pass http://backend; }}");
    let _ = write!(
        s,
        r#"  server {{ listen 127.0.0.1:{plain} reuseport; {location} }}
  server {{ listen 127.0.0.1:{h2c} http2 reuseport; {location} }}
  server {{
    listen 127.0.0.1:{tls} ssl http2 reuseport;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    {location}
  }}
}}
"#,
        plain = ports.plain,
        h2c = ports.h2c,
        tls = ports.tls,
        cert = cert.display(),
        key = key.display(),
    );
    s
}

/// Everything before the `server` blocks: processes, files under `dir`, client keep-alive
/// and the upstream `backend` with keep-alive; the `http` block is left open.
fn preamble(dir: &Path, backend: SocketAddr, workers: usize, access_log: bool) -> String {
    let dir = dir.display();
    let access_log = if access_log {
        format!("access_log {dir}/access.log combined buffer=32k flush=100ms;")
    } else {
        "access_log off;".to_owned()
    };
    format!(
        r#"worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  {access_log}
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
  # Clients keep their connections as long as they like (Gantry and haproxy do not cap them).
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  upstream backend {{
    server {backend};
    keepalive 256;
    keepalive_requests 1000000;
  }}
"#
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_server_block_per_route() {
        let backend = "127.0.0.1:3000".parse().expect("addr");
        let conf = super::config(std::path::Path::new("/tmp/x"), 8080, backend, 3, 2, false);
        assert_eq!(conf.matches("server_name r").count(), 3);
        assert!(conf.contains("server_name r2.bench.example.com; location /svc2 {"));
        assert!(conf.contains("keepalive 256;"));
        assert!(conf.contains("access_log off;"));
        assert!(conf.contains("worker_processes 2;"));
        let logged = super::config(std::path::Path::new("/tmp/x"), 8080, backend, 3, 2, true);
        assert!(logged.contains("access_log /tmp/x/access.log combined buffer=32k flush=100ms;"));
        assert!(conf.contains("listen 127.0.0.1:8080 default_server reuseport;"));
        assert!(conf.ends_with("}\n"));
    }

    #[test]
    fn protocols_serve_one_route_on_three_ports() {
        let backend = "127.0.0.1:3000".parse().expect("addr");
        let ports = super::Ports {
            plain: 8080,
            h2c: 8081,
            tls: 8443,
        };
        let (cert, key) = (
            std::path::Path::new("/c.pem"),
            std::path::Path::new("/k.pem"),
        );
        let conf = super::protocols_config(
            std::path::Path::new("/tmp/x"),
            ports,
            backend,
            2,
            (cert, key),
            ("localhost", "/svc"),
        );
        assert_eq!(
            conf.matches("server_name localhost; location /svc {")
                .count(),
            3
        );
        assert!(conf.contains("listen 127.0.0.1:8081 http2 reuseport;"));
        assert!(conf.contains("listen 127.0.0.1:8443 ssl http2 reuseport;"));
        assert!(conf.contains("ssl_certificate /c.pem;"));
        assert!(conf.contains("ssl_certificate_key /k.pem;"));
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }
}
