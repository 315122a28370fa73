//! JSON body edits of an HTTPTransform: rename, then remove, then set, at RFC 6901 pointers.
//! The pipeline buffers the body (bounded by `maxBytes`) and calls [`apply`].

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::request::Parts;
use serde_json::Value;

use super::template::Template;
use super::{FilterContext, FilterError};
use gantry_translate::ir::{JsonBodyIr, JsonValueIr};

/// Compiled JSON body edits.
#[derive(Debug)]
pub struct JsonBody {
    pub max_bytes: usize,
    rename: Vec<(Vec<String>, Vec<String>)>,
    remove: Vec<Vec<String>>,
    set: Vec<(Vec<String>, SetValue)>,
}

#[derive(Debug)]
enum SetValue {
    Json(Value),
    Template(Template),
}

/// A body edit with its templates rendered for one request.
#[derive(Debug)]
pub struct PreparedBody<'a> {
    body: &'a JsonBody,
    /// One per `set` entry whose value is a template, in order.
    rendered: Vec<String>,
}

impl JsonBody {
    pub fn compile(ir: &JsonBodyIr) -> Result<Self, FilterError> {
        Ok(Self {
            max_bytes: usize::try_from(ir.max_bytes).unwrap_or(usize::MAX),
            rename: ir
                .rename
                .iter()
                .map(|r| (tokens(&r.from), tokens(&r.to)))
                .collect(),
            remove: ir.remove.iter().map(|p| tokens(p)).collect(),
            set: ir
                .set
                .iter()
                .map(|s| {
                    let value = match &s.value {
                        JsonValueIr::Json(v) => SetValue::Json(v.clone()),
                        JsonValueIr::Template(t) => SetValue::Template(Template::compile(t)?),
                    };
                    Ok((tokens(&s.pointer), value))
                })
                .collect::<Result<_, FilterError>>()?,
        })
    }

    /// Renders the templates of `set` for this request.
    pub fn prepare<'a>(&'a self, request: &Parts, context: &FilterContext<'_>) -> PreparedBody<'a> {
        let rendered = self
            .set
            .iter()
            .filter_map(|(_, v)| match v {
                SetValue::Template(t) => Some(t.render(request, context)),
                SetValue::Json(_) => None,
            })
            .collect();
        PreparedBody {
            body: self,
            rendered,
        }
    }
}

impl PreparedBody<'_> {
    pub fn max_bytes(&self) -> usize {
        self.body.max_bytes
    }

    /// Applies the edits to a document. A pointer whose parent is missing (for remove and
    /// rename) or is not an object or array (for set) changes nothing.
    pub fn apply(&self, doc: &mut Value) {
        for (from, to) in &self.body.rename {
            if let Some(value) = take(doc, from) {
                set(doc, to, value);
            }
        }
        for pointer in &self.body.remove {
            take(doc, pointer);
        }
        let mut rendered = self.rendered.iter();
        for (pointer, value) in &self.body.set {
            let value = match value {
                SetValue::Json(v) => v.clone(),
                SetValue::Template(_) => {
                    Value::String(rendered.next().cloned().unwrap_or_default())
                }
            };
            set(doc, pointer, value);
        }
    }
}

/// Whether a message's body is JSON the proxy may edit: `application/json` or
/// `application/*+json`, not compressed.
pub fn is_json(headers: &HeaderMap) -> bool {
    let encoded = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let Some(media) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    !encoded
        && (media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json")))
}

/// A pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn index(token: &str, len: usize) -> Option<usize> {
    // RFC 6901: no leading zeros.
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok().filter(|i| *i < len)
}

/// Removes and returns the value at `pointer`.
fn take(doc: &mut Value, pointer: &[String]) -> Option<Value> {
    let (last, parents) = pointer.split_last()?;
    let mut current = doc;
    for token in parents {
        current = match current {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => {
                let i = index(token, items.len())?;
                items.get_mut(i)?
            }
            _ => return None,
        };
    }
    match current {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let i = index(last, items.len())?;
            Some(items.remove(i))
        }
        _ => None,
    }
}

/// Writes `value` at `pointer`, creating missing parent objects; `-` appends to an array.
fn set(doc: &mut Value, pointer: &[String], value: Value) {
    let Some((last, parents)) = pointer.split_last() else {
        return;
    };
    let mut current = doc;
    for token in parents {
        current = match current {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(items) => {
                let Some(i) = index(token, items.len()) else {
                    return;
                };
                &mut items[i]
            }
            _ => return,
        };
    }
    match current {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            if last == "-" || last == &items.len().to_string() {
                items.push(value);
            } else if let Some(i) = index(last, items.len()) {
                items[i] = value;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_translate::ir::{JsonRenameIr, JsonSetIr, SegmentIr, TemplateIr};
    use serde_json::json;

    fn context() -> FilterContext<'static> {
        FilterContext {
            scheme: "http",
            listener_port: 80,
            host: "example.com",
            matched_prefix: None,
            client: "127.0.0.1".parse().unwrap(),
            route: "default/r",
        }
    }

    #[test]
    fn rename_remove_set_in_that_order() {
        let body = JsonBody::compile(&JsonBodyIr {
            max_bytes: 100,
            rename: vec![
                JsonRenameIr {
                    from: "/user_id".into(),
                    to: "/user/id".into(),
                },
                JsonRenameIr {
                    from: "/absent".into(),
                    to: "/never".into(),
                },
            ],
            remove: vec!["/password".into(), "/list/0".into(), "/a~1b".into()],
            set: vec![
                JsonSetIr {
                    pointer: "/meta/route".into(),
                    value: JsonValueIr::Template(TemplateIr(vec![SegmentIr::Route])),
                },
                JsonSetIr {
                    pointer: "/list/-".into(),
                    value: JsonValueIr::Json(json!({"x": 1})),
                },
                JsonSetIr {
                    pointer: "/name/inner".into(),
                    value: JsonValueIr::Json(json!(true)),
                },
            ],
        })
        .unwrap();
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let prepared = body.prepare(&parts, &context());
        let mut doc = json!({
            "user_id": 7, "password": "p", "list": [1, 2], "a/b": 0, "name": "scalar"
        });
        prepared.apply(&mut doc);
        assert_eq!(
            doc,
            json!({
                "user": {"id": 7}, "list": [2, {"x": 1}], "name": "scalar",
                "meta": {"route": "default/r"}
            })
        );
    }

    #[test]
    fn json_content_types() {
        let headers = |ct: &str, ce: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, ct.parse().unwrap());
            if let Some(ce) = ce {
                h.insert(CONTENT_ENCODING, ce.parse().unwrap());
            }
            h
        };
        assert!(is_json(&headers("application/json", None)));
        assert!(is_json(&headers("Application/JSON; charset=utf-8", None)));
        assert!(is_json(&headers("application/problem+json", None)));
        assert!(is_json(&headers("application/json", Some("identity"))));
        assert!(!is_json(&headers("application/json", Some("gzip"))));
        assert!(!is_json(&headers("text/plain", None)));
        assert!(!is_json(&HeaderMap::new()));
    }
}
