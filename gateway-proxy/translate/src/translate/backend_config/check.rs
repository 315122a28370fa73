//! Reading a BackendConfigPolicy's values: every problem is collected with the field it is in
//! and the rule it breaks, so that one status names them all.

use std::str::FromStr;

use gantry_crds::gateway::Duration;

/// The problems found so far.
#[derive(Debug, Default)]
pub struct Check {
    problems: Vec<String>,
}

impl Check {
    pub fn fail(&mut self, message: String) {
        self.problems.push(message);
    }

    /// Every problem, or `None` when the values are usable.
    pub fn finish(self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }

    /// A GEP-2257 duration in milliseconds: `default_ms` when unset; at least `min_ms`.
    pub fn duration_ms(
        &mut self,
        field: &str,
        text: Option<&str>,
        default_ms: u64,
        min_ms: u64,
    ) -> u64 {
        let Some(text) = text else {
            return default_ms;
        };
        match parse_ms(text) {
            Err(e) => {
                self.fail(format!(
                    "{field} {text:?} is not a Gateway API duration such as \"10s\" or \"500ms\": {e}"
                ));
                default_ms
            }
            Ok(ms) if ms < min_ms => {
                self.fail(format!(
                    "{field} {text:?} {}",
                    if min_ms == 1 {
                        "must be longer than 0".to_owned()
                    } else {
                        format!("must be at least {}", shown(min_ms))
                    }
                ));
                default_ms
            }
            Ok(ms) => ms,
        }
    }

    /// An integer: `default` when unset; from `min` to `max`.
    pub fn integer(
        &mut self,
        field: &str,
        value: Option<i64>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        let Some(value) = value else {
            return default;
        };
        match u32::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.fail(format!("{field} {value} must be from {min} to {max}"));
                default
            }
        }
    }
}

/// Milliseconds of a GEP-2257 duration.
fn parse_ms(text: &str) -> Result<u64, String> {
    let d = Duration::from_str(text).map_err(|e| e.to_string())?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `1s`, `1500ms`, as a rule's bound is best read.
fn shown(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Whether `name` is an HTTP field name (RFC 9110 `token`).
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_default_parse_and_keep_their_minimum() {
        let mut check = Check::default();
        assert_eq!(check.duration_ms("f", None, 3_000, 1), 3_000);
        assert_eq!(check.duration_ms("f", Some("1m2s"), 3_000, 1), 62_000);
        assert_eq!(check.duration_ms("f", Some("0s"), 3_000, 0), 0);
        assert!(check.finish().is_none());
        let mut check = Check::default();
        check.duration_ms("a.interval", Some("0s"), 3_000, 1);
        check.duration_ms("a.idle", Some("500ms"), 3_000, 1_000);
        check.duration_ms("a.ttl", Some("soon"), 3_000, 0);
        let message = check.finish().unwrap_or_default();
        assert!(
            message.contains("a.interval \"0s\" must be longer than 0"),
            "{message}"
        );
        assert!(
            message.contains("a.idle \"500ms\" must be at least 1s"),
            "{message}"
        );
        assert!(
            message.contains("a.ttl \"soon\" is not a Gateway API duration"),
            "{message}"
        );
    }

    #[test]
    fn integers_keep_their_range() {
        let mut check = Check::default();
        assert_eq!(check.integer("f", None, 5, 0, 10), 5);
        assert_eq!(check.integer("f", Some(10), 5, 0, 10), 10);
        assert!(check.finish().is_none());
        let mut check = Check::default();
        check.integer("t", Some(0), 3, 1, u32::MAX);
        check.integer("p", Some(-1), 3, 0, 100);
        let message = check.finish().unwrap_or_default();
        assert!(
            message.contains("t 0 must be from 1 to 4294967295"),
            "{message}"
        );
        assert!(message.contains("p -1 must be from 0 to 100"), "{message}");
    }

    #[test]
    fn tokens() {
        assert!(is_token("x-user-id"));
        assert!(!is_token("x user"));
        assert!(!is_token(""));
        assert!(!is_token("a:b"));
    }
}
