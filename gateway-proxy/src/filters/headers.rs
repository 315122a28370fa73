//! RequestHeaderModifier and ResponseHeaderModifier: set, add, remove.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::FilterError;
use gantry_translate::ir::{HeaderModifierIr, HeaderValueIr};

/// Header edits applied as set, then add (appends a value), then remove.
#[derive(Debug, Default)]
pub struct HeaderModifier {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn compile(ir: &HeaderModifierIr) -> Result<Self, FilterError> {
        Ok(Self {
            set: ir.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: ir.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: ir
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

fn name(name: &str) -> Result<HeaderName, FilterError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| FilterError::HeaderName(name.to_owned()))
}

fn pair(h: &HeaderValueIr) -> Result<(HeaderName, HeaderValue), FilterError> {
    let value =
        HeaderValue::from_str(&h.value).map_err(|_| FilterError::HeaderValue(h.name.clone()))?;
    Ok((name(&h.name)?, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(name: &str, value: &str) -> HeaderValueIr {
        HeaderValueIr {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn set_add_remove() {
        let modifier = HeaderModifier::compile(&HeaderModifierIr {
            set: vec![hv("x-set", "new")],
            add: vec![hv("x-add", "two")],
            remove: vec!["x-gone".into()],
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-set", HeaderValue::from_static("old"));
        headers.append("x-set", HeaderValue::from_static("older"));
        headers.insert("x-add", HeaderValue::from_static("one"));
        headers.insert("x-gone", HeaderValue::from_static("bye"));
        headers.insert("x-keep", HeaderValue::from_static("yes"));
        modifier.apply(&mut headers);
        assert_eq!(headers.get_all("x-set").iter().collect::<Vec<_>>(), ["new"]);
        assert_eq!(
            headers.get_all("x-add").iter().collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert!(!headers.contains_key("x-gone"));
        assert_eq!(headers["x-keep"], "yes");
    }

    #[test]
    fn add_creates_missing_header() {
        let modifier = HeaderModifier::compile(&HeaderModifierIr {
            add: vec![hv("X-New", "v")],
            ..Default::default()
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        modifier.apply(&mut headers);
        assert_eq!(headers["x-new"], "v");
    }

    #[test]
    fn invalid_names_are_rejected() {
        let err = HeaderModifier::compile(&HeaderModifierIr {
            set: vec![hv("bad name", "v")],
            ..Default::default()
        });
        assert!(matches!(err, Err(FilterError::HeaderName(_))));
    }
}
