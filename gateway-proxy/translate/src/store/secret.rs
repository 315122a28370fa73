//! Secrets as written by hand: `stringData` merged into `data`, as the API server does on
//! write, so the rest of the proxy reads `data` only.

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

/// Moves every `stringData` entry into `data` (a `stringData` key wins over the same `data`
/// key, as in Kubernetes) and clears `stringData`.
pub fn merge_string_data(mut secret: Arc<Secret>) -> Arc<Secret> {
    if secret.string_data.is_none() {
        return secret;
    }
    let s = Arc::make_mut(&mut secret);
    if let Some(strings) = s.string_data.take() {
        let data = s.data.get_or_insert_with(Default::default);
        for (key, value) in strings {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_merged_into_data_and_wins() {
        let secret = Secret {
            data: Some(
                [
                    ("a".to_owned(), ByteString(b"from data".to_vec())),
                    ("b".to_owned(), ByteString(b"kept".to_vec())),
                ]
                .into(),
            ),
            string_data: Some([("a".to_owned(), "from stringData".to_owned())].into()),
            ..Secret::default()
        };
        let merged = merge_string_data(Arc::new(secret));
        assert!(merged.string_data.is_none());
        let data = merged.data.as_ref().unwrap();
        assert_eq!(data["a"].0, b"from stringData");
        assert_eq!(data["b"].0, b"kept");
    }
}
