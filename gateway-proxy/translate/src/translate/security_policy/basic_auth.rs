//! `basicAuth`: the users of the htpasswd file in the `.htpasswd` key of a Secret. Only hashes
//! the data plane can verify are accepted: bcrypt (`$2y$`, `$2a$`, `$2b$`) and `{SHA}`.

use gantry_crds::security::BasicAuth;

use super::api_key::{Consumers, header};
use super::secrets;
use crate::ir::{BasicAuthIr, HtpasswdUserIr, PasswordHash};
use crate::store::{ObjectKey, Store};

/// The Secret key holding the htpasswd file (Envoy Gateway's).
pub const HTPASSWD_KEY: &str = ".htpasswd";

pub fn validate(
    store: &Store,
    key: &ObjectKey,
    auth: &BasicAuth,
    consumers: &Consumers,
) -> Result<BasicAuthIr, Vec<String>> {
    let mut problems = consumers.problems.clone();
    let secret = ObjectKey::new(
        auth.users.namespace.as_deref().unwrap_or(&key.namespace),
        auth.users.name.as_str(),
    );
    let mut users = Vec::new();
    match secrets::data(store, "SecurityPolicy", &key.namespace, &auth.users) {
        Ok(data) => match data.get(HTPASSWD_KEY) {
            None => problems.push(format!("Secret {secret} has no {HTPASSWD_KEY:?} key")),
            Some(bytes) => match std::str::from_utf8(&bytes.0) {
                Err(_) => problems.push(format!("Secret {secret} {HTPASSWD_KEY} is not UTF-8")),
                Ok(text) => match parse_htpasswd(text) {
                    Ok(parsed) => users = parsed,
                    Err((line, message)) => problems.push(format!(
                        "Secret {secret} {HTPASSWD_KEY} line {line}: {message}"
                    )),
                },
            },
        },
        Err(message) => problems.push(message),
    }
    let forward_username_header = header(
        "basicAuth.forwardUsernameHeader",
        auth.forward_username_header.as_deref(),
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let users = users
        .into_iter()
        .map(|(name, hash)| HtpasswdUserIr {
            consumer: consumers
                .selected
                .iter()
                .find(|c| c.basic_auth_user.as_deref() == Some(name.as_str()))
                .map(|c| c.ir.clone()),
            name,
            hash: PasswordHash::new(hash),
        })
        .collect();
    Ok(BasicAuthIr {
        realm: auth.realm.clone().unwrap_or_else(|| key.to_string()),
        users,
        forward_username_header,
    })
}

/// Parses an htpasswd file: `user:hash` per line; blank lines and `#` comments are skipped.
/// Sorted by user. The error is the 1-based line number and what is wrong with it (never the
/// hash itself).
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((n, "expected user:hash".to_owned()));
        };
        if user.is_empty() {
            return Err((n, "the user name is empty".to_owned()));
        }
        let supported = ["$2y$", "$2a$", "$2b$"]
            .iter()
            .any(|p| hash.starts_with(p) && hash.len() == 60)
            || hash
                .strip_prefix("{SHA}")
                .is_some_and(|b64| b64.len() == 28);
        if !supported {
            return Err((
                n,
                format!(
                    "user {user:?}: the hash is not bcrypt ($2y$, $2a$, $2b$) or {{SHA}}; use `htpasswd -B` or `htpasswd -s`"
                ),
            ));
        }
        if users.iter().any(|(u, _)| u == user) {
            return Err((n, format!("user {user:?} appears twice")));
        }
        users.push((user.to_owned(), hash.to_owned()));
    }
    users.sort();
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuv0123456789012345678901234567890";

    #[test]
    fn parses_bcrypt_and_sha_users_skipping_comments() {
        assert_eq!(BCRYPT.len(), 60);
        let text = format!("# users\n\nbob:{BCRYPT}\nalice:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n");
        let users = parse_htpasswd(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].0, "alice");
        assert_eq!(users[1].0, "bob");
    }

    #[test]
    fn names_the_malformed_line() {
        let text = format!("bob:{BCRYPT}\nno-colon\n");
        assert_eq!(parse_htpasswd(&text).unwrap_err().0, 2);
        let md5 = "carol:$apr1$abc$defghijklmnopqrstuvwx\n";
        let (line, message) = parse_htpasswd(md5).unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("carol"), "{message}");
        assert!(
            !message.contains("apr1"),
            "the hash is never shown: {message}"
        );
        assert_eq!(
            parse_htpasswd(&format!("a:{BCRYPT}\na:{BCRYPT}"))
                .unwrap_err()
                .0,
            2
        );
    }
}
