//! Value templates of HTTPTransform and HTTPComposition: `${variable}` segments between
//! literal text, parsed once at translation into [`TemplateIr`].
//!
//! Variables: `client_ip`, `request_id`, `route`, `host`, `path`, `method`, `query.NAME`,
//! `header.NAME`. `$$` is a literal `$`; a `$` not followed by `{` or `$` is literal too. There
//! is no `path_param.NAME`: Gateway API path matches have no named parameters.

use crate::ir::{SegmentIr, TemplateIr};

/// The variables a template may use, for messages.
pub const VARIABLES: &str =
    "client_ip, request_id, route, host, path, method, query.NAME, header.NAME";

/// Parses a template, or says what is wrong with it.
pub fn parse(text: &str) -> Result<TemplateIr, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unterminated variable \"${{{inner}\" in {text:?}"))?;
            let segment = variable(&inner[..end])?;
            if !literal.is_empty() {
                segments.push(SegmentIr::Literal(std::mem::take(&mut literal)));
            }
            segments.push(segment);
            rest = &inner[end + 1..];
        } else {
            literal.push('$');
            rest = after;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(SegmentIr::Literal(literal));
    }
    Ok(TemplateIr(segments))
}

fn variable(name: &str) -> Result<SegmentIr, String> {
    Ok(match name {
        "client_ip" => SegmentIr::ClientIp,
        "request_id" => SegmentIr::RequestId,
        "route" => SegmentIr::Route,
        "host" => SegmentIr::Host,
        "path" => SegmentIr::Path,
        "method" => SegmentIr::Method,
        _ => {
            if let Some(query) = name.strip_prefix("query.").filter(|q| !q.is_empty()) {
                SegmentIr::Query(query.to_owned())
            } else if let Some(header) = name.strip_prefix("header.") {
                let lower = header.to_ascii_lowercase();
                if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    return Err(format!(
                        "variable \"${{{name}}}\" does not name a valid header"
                    ));
                }
                SegmentIr::Header(lower)
            } else if name.starts_with("path_param.") {
                return Err(format!(
                    "unknown variable \"${{{name}}}\": Gateway API path matches have no named parameters; use one of {VARIABLES}"
                ));
            } else {
                return Err(format!(
                    "unknown variable \"${{{name}}}\"; use one of {VARIABLES}"
                ));
            }
        }
    })
}

/// The literal text of a template (what it renders to when every variable is empty).
pub fn literal_text(template: &TemplateIr) -> String {
    template
        .0
        .iter()
        .filter_map(|s| match s {
            SegmentIr::Literal(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_variables() {
        let t = parse("id=${request_id}; $$5 ${header.X-User} $x ${query.q}").unwrap();
        assert_eq!(
            t.0,
            vec![
                SegmentIr::Literal("id=".into()),
                SegmentIr::RequestId,
                SegmentIr::Literal("; $5 ".into()),
                SegmentIr::Header("x-user".into()),
                SegmentIr::Literal(" $x ".into()),
                SegmentIr::Query("q".into()),
            ]
        );
        assert_eq!(parse("").unwrap().0, vec![]);
        assert_eq!(parse("$").unwrap().0, vec![SegmentIr::Literal("$".into())]);
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "${nope}",
            "${client_ip",
            "${query.}",
            "${header.bad name}",
            "${path_param.id}",
            "${}",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
