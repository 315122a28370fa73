//! HTTP upgrades (WebSocket): bridges the client's and the upstream's upgraded connections.

use http::Response;
use http::header::{CONNECTION, HeaderMap, UPGRADE};
use hyper::body::Incoming;
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

/// After the upstream answered `101 Switching Protocols`, copies bytes both ways between the
/// two upgraded connections until either side closes.
pub fn bridge(downstream: OnUpgrade, upstream_response: &mut Response<Incoming>) {
    let upstream = hyper::upgrade::on(upstream_response);
    tokio::spawn(async move {
        match tokio::try_join!(downstream, upstream) {
            Ok((client, server)) => {
                let mut client = TokioIo::new(client);
                let mut server = TokioIo::new(server);
                if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    tracing::debug!(%error, "upgraded connection ended with an error");
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
}
