//! HTTPTransform: its spec validated into [`TransformIr`]. Any invalid field makes the whole
//! filter invalid; the message names the field.

use gantry_crds::transform::{
    DEFAULT_BODY_BYTES, HeaderTemplate, HeaderTransform, HttpTransformSpec, JsonBodyTransform,
    MAX_BODY_BYTES, PathRegex,
};

use super::template;
use crate::ir::{
    JsonBodyIr, JsonRenameIr, JsonSetIr, JsonValueIr, PATH_REGEX_SIZE_LIMIT, PathRegexIr,
    TemplateHeaderIr, TemplateHeadersIr, TransformIr,
};

/// Validates an HTTPTransform's spec; `Err` is a message naming the bad field.
pub fn translate(spec: &HttpTransformSpec, source: String) -> Result<TransformIr, String> {
    let request = spec.request.as_ref();
    let response = spec.response.as_ref();
    Ok(TransformIr {
        source,
        request_headers: request
            .and_then(|r| r.headers.as_ref())
            .map(|h| headers("request.headers", h))
            .transpose()?,
        path_regex: request
            .and_then(|r| r.path_regex.as_ref())
            .map(path_regex)
            .transpose()?,
        request_body: request
            .and_then(|r| r.body.as_ref())
            .map(|b| body("request.body", b))
            .transpose()?,
        response_headers: response
            .and_then(|r| r.headers.as_ref())
            .map(|h| headers("response.headers", h))
            .transpose()?,
        response_body: response
            .and_then(|r| r.body.as_ref())
            .map(|b| body("response.body", b))
            .transpose()?,
    })
}

fn header_name(field: &str, name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| lower)
        .map_err(|_| format!("{field}: {name:?} is not a valid HTTP header name"))
}

fn header_template(field: &str, h: &HeaderTemplate) -> Result<TemplateHeaderIr, String> {
    let name = header_name(field, &h.name)?;
    let value = template::parse(&h.value).map_err(|e| format!("{field}.value: {e}"))?;
    // Variables are checked when rendered; the literal text must be valid in a header.
    if http::HeaderValue::from_str(&template::literal_text(&value)).is_err() {
        return Err(format!(
            "{field}.value: {:?} has characters not allowed in an HTTP header",
            h.value
        ));
    }
    Ok(TemplateHeaderIr { name, value })
}

fn headers(field: &str, h: &HeaderTransform) -> Result<TemplateHeadersIr, String> {
    let list = |kind: &str, list: &Option<Vec<HeaderTemplate>>| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| header_template(&format!("{field}.{kind}[{i}]"), t))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(TemplateHeadersIr {
        set: list("set", &h.set)?,
        add: list("add", &h.add)?,
        remove: h
            .remove
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, n)| header_name(&format!("{field}.remove[{i}]"), n))
            .collect::<Result<_, _>>()?,
    })
}

/// `pathRegex`: the pattern compiled once here (size-limited) to be sure it is valid, and the
/// substitution's `\1`..`\9` turned into the `regex` crate's `${1}`.
fn path_regex(p: &PathRegex) -> Result<PathRegexIr, String> {
    let regex = regex::RegexBuilder::new(&p.pattern)
        .size_limit(PATH_REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("request.pathRegex.pattern {:?} is not a valid regular expression (or is too large): {e}", p.pattern))?;
    let groups = regex.captures_len() - 1;
    let mut substitution = String::with_capacity(p.substitution.len());
    let mut chars = p.substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => substitution.push_str("$$"),
            '\\' => match chars.next() {
                Some(d @ '0'..='9') => {
                    let n = d.to_digit(10).unwrap_or(0) as usize;
                    if n > groups {
                        return Err(format!(
                            "request.pathRegex.substitution refers to group \\{n}, but the pattern has {groups}"
                        ));
                    }
                    substitution.push_str(&format!("${{{n}}}"));
                }
                Some('\\') => substitution.push('\\'),
                _ => {
                    return Err(format!(
                        "request.pathRegex.substitution {:?}: a backslash must be followed by a digit or another backslash",
                        p.substitution
                    ));
                }
            },
            c => substitution.push(c),
        }
    }
    Ok(PathRegexIr {
        pattern: p.pattern.clone(),
        substitution,
    })
}

/// An RFC 6901 JSON pointer to something inside the document (not the whole of it).
fn pointer(field: &str, p: &str) -> Result<String, String> {
    let valid = p.starts_with('/') && {
        let mut chars = p.chars();
        let mut ok = true;
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                ok = false;
                break;
            }
        }
        ok
    };
    if valid {
        Ok(p.to_owned())
    } else {
        Err(format!(
            "{field}: {p:?} is not a JSON pointer to a member (RFC 6901: starts with '/', '~' only as ~0 or ~1)"
        ))
    }
}

fn body(field: &str, b: &JsonBodyTransform) -> Result<JsonBodyIr, String> {
    let max_bytes = b.max_bytes.unwrap_or(DEFAULT_BODY_BYTES);
    if !(1..=MAX_BODY_BYTES).contains(&max_bytes) {
        return Err(format!(
            "{field}.maxBytes {max_bytes} is not within 1..{MAX_BODY_BYTES}"
        ));
    }
    let rename = b
        .rename
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{field}.rename[{i}]");
            let from = pointer(&format!("{at}.from"), &r.from)?;
            let to = pointer(&format!("{at}.to"), &r.to)?;
            if to == from || to.starts_with(&format!("{from}/")) {
                return Err(format!("{at}: {to:?} is {from:?} or inside it"));
            }
            Ok(JsonRenameIr { from, to })
        })
        .collect::<Result<_, String>>()?;
    let remove = b
        .remove
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| pointer(&format!("{field}.remove[{i}]"), p))
        .collect::<Result<_, _>>()?;
    let set = b
        .set
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{field}.set[{i}]");
            let value = match (&s.value, &s.template) {
                (Some(v), None) => JsonValueIr::Json(v.clone()),
                (None, Some(t)) => JsonValueIr::Template(
                    template::parse(t).map_err(|e| format!("{at}.template: {e}"))?,
                ),
                _ => return Err(format!("{at}: set exactly one of value and template")),
            };
            Ok(JsonSetIr {
                pointer: pointer(&format!("{at}.pointer"), &s.pointer)?,
                value,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(JsonBodyIr {
        max_bytes: max_bytes.unsigned_abs(),
        rename,
        remove,
        set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_groups_are_converted_and_checked() {
        let ir = path_regex(&PathRegex {
            pattern: "^/api/(v[0-9]+)/(.*)$".into(),
            substitution: "/\\2/\\1/$5".into(),
        })
        .unwrap();
        assert_eq!(ir.substitution, "/${2}/${1}/$$5");
        assert!(
            path_regex(&PathRegex {
                pattern: "^/(a)$".into(),
                substitution: "/\\2".into(),
            })
            .is_err()
        );
        assert!(
            path_regex(&PathRegex {
                pattern: "(".into(),
                substitution: "/".into(),
            })
            .is_err()
        );
    }

    #[test]
    fn pointers() {
        assert!(pointer("f", "/a/b~0c~1d").is_ok());
        for bad in ["", "a", "/a~", "/a~2"] {
            assert!(pointer("f", bad).is_err(), "{bad}");
        }
    }
}
