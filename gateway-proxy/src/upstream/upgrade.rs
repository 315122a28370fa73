//! HTTP upgrades (WebSocket): which upgrades are tunnelled, and the bridge between the
//! client's and the upstream's upgraded connections.
//!
//! After a `101`, bytes flow to the backend with no routing or filter in between, so only
//! WebSocket (RFC 6455: a GET over HTTP/1.1 asking for `websocket`) is tunnelled. `h2c` (removed
//! by RFC 9113 §3.1) and any other protocol are not: the pipeline drops the headers and serves
//! the request as an ordinary one.

use http::header::{CONNECTION, HeaderMap, UPGRADE};
use http::request::Parts;
use http::{Method, Response, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// True when the request asks to switch protocols (`Connection: upgrade` and `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The upgrades Gantry tunnels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    WebSocket,
}

/// The upgrade the request asks for, when it is one Gantry tunnels.
pub fn requested(parts: &Parts) -> Option<Upgrade> {
    let websocket = parts.method == Method::GET
        && parts.version == Version::HTTP_11
        && is_upgrade_request(&parts.headers)
        && only_websocket(&parts.headers);
    websocket.then_some(Upgrade::WebSocket)
}

/// Whether a `101` response switches to the protocol that was asked for.
pub fn accepts(response: &HeaderMap, upgrade: Upgrade) -> bool {
    match upgrade {
        Upgrade::WebSocket => only_websocket(response),
    }
}

/// Exactly one `Upgrade` header naming exactly `websocket`.
fn only_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(UPGRADE).iter();
    let first = values.next();
    values.next().is_none()
        && first
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// After the upstream answered `101 Switching Protocols`, copies bytes both ways between the
/// two upgraded connections until either side closes, or until `until` resolves (the proxy
/// drains): then both are closed ([`super::close::close_both`]). `hold` is kept until the bridge
/// ends (the drain counts the connection open while it is).
pub fn bridge<B, F, H>(
    downstream: OnUpgrade,
    upstream_response: &mut Response<B>,
    until: F,
    hold: H,
) where
    F: Future<Output = ()> + Send + 'static,
    H: Send + 'static,
{
    let upstream = hyper::upgrade::on(upstream_response);
    tokio::spawn(async move {
        let _hold = hold;
        match tokio::try_join!(downstream, upstream) {
            Ok((client, server)) => {
                let mut client = TokioIo::new(client);
                let mut server = TokioIo::new(server);
                let copied = tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut server) => Some(copied),
                    () = until => None,
                };
                match copied {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::debug!(%error, "upgraded connection ended with an error");
                    }
                    None => {
                        tracing::debug!("draining: closing an upgraded connection");
                        super::close::close_both(&mut client, &mut server).await;
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn detects_upgrade_requests() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(!is_upgrade_request(&headers));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&headers));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!is_upgrade_request(&headers));
    }

    #[test]
    fn only_websocket_over_http1_get_is_tunnelled() {
        let request = |method: Method, version: Version, upgrade: &str| {
            let (parts, ()) = http::Request::builder()
                .method(method)
                .version(version)
                .uri("/")
                .header(CONNECTION, "Upgrade")
                .header(UPGRADE, upgrade)
                .body(())
                .unwrap()
                .into_parts();
            requested(&parts)
        };
        let h11 = Version::HTTP_11;
        assert_eq!(
            request(Method::GET, h11, "websocket"),
            Some(Upgrade::WebSocket)
        );
        assert_eq!(
            request(Method::GET, h11, "WebSocket"),
            Some(Upgrade::WebSocket)
        );
        assert_eq!(request(Method::GET, h11, "h2c"), None);
        assert_eq!(request(Method::GET, h11, "websocket, h2c"), None);
        assert_eq!(request(Method::GET, h11, "tls/1.2"), None);
        assert_eq!(request(Method::POST, h11, "websocket"), None);
        assert_eq!(request(Method::GET, Version::HTTP_10, "websocket"), None);
        let mut response = HeaderMap::new();
        assert!(!accepts(&response, Upgrade::WebSocket));
        response.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!accepts(&response, Upgrade::WebSocket));
        response.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(accepts(&response, Upgrade::WebSocket));
    }
}
