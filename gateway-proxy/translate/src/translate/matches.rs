//! HTTPRouteMatch: path, headers, query parameters and method, validated into the IR.

use gantry_crds::gateway::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};

use super::conditions::{self as c, Problem};
use crate::ir::{HttpMatchIr, PathMatchIr, ValueMatchIr, ValueMatchKind};

/// The matches of a rule; none means the spec's default, a `PathPrefix` match on `/`.
pub fn translate_matches(
    matches: Option<&[HttpRouteRulesMatches]>,
) -> Result<Vec<HttpMatchIr>, Problem> {
    match matches {
        None | Some([]) => Ok(vec![HttpMatchIr::default()]),
        // Collecting `Result`s gives no size hint, so the list would keep room for four.
        Some(ms) => ms
            .iter()
            .map(translate_match)
            .collect::<Result<Vec<_>, _>>()
            .map(|mut list| {
                list.shrink_to_fit();
                list
            }),
    }
}

fn translate_match(m: &HttpRouteRulesMatches) -> Result<HttpMatchIr, Problem> {
    let path = match &m.path {
        None => PathMatchIr::default(),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_owned());
            match p
                .r#type
                .clone()
                .unwrap_or(HttpRouteRulesMatchesPathType::PathPrefix)
            {
                HttpRouteRulesMatchesPathType::Exact => PathMatchIr::Exact(absolute_path(value)?),
                HttpRouteRulesMatchesPathType::PathPrefix => {
                    PathMatchIr::Prefix(absolute_path(value)?)
                }
                HttpRouteRulesMatchesPathType::RegularExpression => {
                    PathMatchIr::RegularExpression(valid_regex("path", value)?)
                }
            }
        }
    };
    let headers = translate_header_matches(m.headers.iter().flatten().map(|h| {
        (
            h.name.as_str(),
            h.value.as_str(),
            h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression),
        )
    }))?;
    // HTTPQueryParamMatch: as for headers, only the first entry of a name counts; query
    // parameter names are case-sensitive.
    let mut query_params: Vec<ValueMatchIr> = Vec::new();
    for q in m.query_params.iter().flatten() {
        if query_params.iter().any(|x| x.name == q.name) {
            continue;
        }
        let regex = q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression);
        query_params.push(value_match(q.name.clone(), q.value.clone(), regex)?);
    }
    let method = m.method.as_ref().map(|meth| {
        // The enum's serde names are the upper-case method names.
        serde_json::to_value(meth)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{meth:?}").to_ascii_uppercase())
    });
    Ok(HttpMatchIr {
        path,
        headers,
        query_params,
        method,
    })
}

/// Header matches as `(name, value, is_regex)`. HTTPHeaderMatch and GRPCHeaderMatch: "If
/// multiple entries specify equivalent header names, only the first entry with an equivalent
/// name MUST be considered for a match. Subsequent entries with an equivalent header name MUST
/// be ignored." Header names are case-insensitive.
pub fn translate_header_matches<'a>(
    headers: impl Iterator<Item = (&'a str, &'a str, bool)>,
) -> Result<Vec<ValueMatchIr>, Problem> {
    let mut out: Vec<ValueMatchIr> = Vec::new();
    for (name, value, regex) in headers {
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(Problem::new(
                c::REASON_UNSUPPORTED_VALUE,
                format!("header match name {name:?} is not a valid HTTP header name"),
            ));
        }
        if out.iter().any(|x| x.name == lower) {
            continue;
        }
        out.push(value_match(lower, value.to_owned(), regex)?);
    }
    Ok(out)
}

fn value_match(name: String, value: String, regex: bool) -> Result<ValueMatchIr, Problem> {
    Ok(if regex {
        ValueMatchIr {
            value: valid_regex(&name, value)?,
            name,
            kind: ValueMatchKind::RegularExpression,
        }
    } else {
        ValueMatchIr {
            name,
            kind: ValueMatchKind::Exact,
            value,
        }
    })
}

fn absolute_path(value: String) -> Result<String, Problem> {
    if value.starts_with('/') {
        Ok(value)
    } else {
        Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!("path {value:?} must start with '/'"),
        ))
    }
}

/// RegularExpression matches use RE2-like syntax; the `regex` crate's is the same family.
pub fn valid_regex(what: &str, value: String) -> Result<String, Problem> {
    match regex::Regex::new(&value) {
        Ok(_) => Ok(value),
        Err(e) => Err(Problem::new(
            c::REASON_UNSUPPORTED_VALUE,
            format!(
                "{what} regular expression {value:?} is invalid: {}",
                last_line(&e.to_string())
            ),
        )),
    }
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_owned()
}
