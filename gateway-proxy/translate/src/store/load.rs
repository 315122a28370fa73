//! Loads parsed objects into a [`Store`], refusing duplicates and naming both places.

use std::collections::HashSet;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use super::slot;
use super::yaml::{CrdValidation, ParseIssue, Parsed, parse_documents_with};
use crate::store::Store;

/// Why a bundle of objects could not be loaded into a [`Store`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Parse(#[from] ParseIssue),
    #[error(
        "{kind} {key} is defined twice, at {first} and at {second}; delete or rename one of them"
    )]
    Duplicate {
        kind: &'static str,
        key: String,
        first: String,
        second: String,
    },
}

/// Parses every `(origin, text)` pair and loads the objects into a [`Store`]. Warnings are
/// returned with the store; any error fails the load and all errors are reported.
pub fn load_store<O, T>(
    sources: impl IntoIterator<Item = (O, T)>,
) -> Result<(Store, Vec<ParseIssue>), Vec<LoadError>>
where
    O: AsRef<str>,
    T: AsRef<str>,
{
    let (store, warnings) = ParseCache::default().load(sources)?;
    // The cache that kept a second reference is gone: the store is taken, not copied.
    Ok((Arc::unwrap_or_clone(store), warnings))
}

/// Parsed files kept between loads, so that a change re-parses only the files whose text
/// changed. When the last load succeeded, the next one starts from its store and replaces only
/// the objects of the files that changed, were added or were removed; loading from scratch
/// (every file's objects into an empty store) is what it falls back to, and what it must equal
/// (`tests/store_differential.rs`).
#[derive(Debug, Default)]
pub struct ParseCache {
    files: HashMap<String, ParsedFile>,
    validation: CrdValidation,
    /// The store of the last load, when it had no error: the one that load returned, not a
    /// copy, so the store in use is held once (at 5,000 routes a copy of its maps was about
    /// 120 bytes a route). Patching it copies it only while it is still in use.
    last: Option<Arc<Store>>,
    /// Whether the last load read a different set of files or texts than the one before.
    changed: bool,
    loaded: bool,
}

#[derive(Debug)]
struct ParsedFile {
    text_hash: (usize, u64),
    objects: Vec<Parsed>,
    issues: Vec<ParseIssue>,
}

impl ParseCache {
    /// A cache that checks only the types, not the CRDs' validation ([`CrdValidation::Off`]).
    pub fn without_crd_validation() -> Self {
        Self {
            validation: CrdValidation::Off,
            ..Self::default()
        }
    }

    /// Whether the last [`ParseCache::load`] was given files, or texts, the one before it was
    /// not (always, for the first).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Like [`load_store`], reusing the parse of every file whose text is unchanged since the
    /// last call. Files not given this time are forgotten. When no file changed, the store is
    /// the last one returned.
    pub fn load<O, T>(
        &mut self,
        sources: impl IntoIterator<Item = (O, T)>,
    ) -> Result<(Arc<Store>, Vec<ParseIssue>), Vec<LoadError>>
    where
        O: AsRef<str>,
        T: AsRef<str>,
    {
        let mut warnings = Vec::new();
        let mut failed = false;
        let mut order = Vec::new();
        // The objects of the files replaced or removed, and the names of the files parsed.
        let mut gone: Vec<Parsed> = Vec::new();
        let mut parsed_now = Vec::new();
        for (origin, text) in sources {
            let (origin, text) = (origin.as_ref(), text.as_ref());
            let text_hash = hash(text);
            let file = match self.files.entry(origin.to_owned()) {
                Entry::Occupied(e) if e.get().text_hash == text_hash => e.into_mut(),
                entry => {
                    let (objects, issues) = parse_documents_with(text, origin, self.validation);
                    let parsed = ParsedFile {
                        text_hash,
                        objects,
                        issues,
                    };
                    parsed_now.push(origin.to_owned());
                    match entry {
                        Entry::Occupied(mut e) => {
                            gone.append(&mut e.insert(parsed).objects);
                            e.into_mut()
                        }
                        Entry::Vacant(e) => e.insert(parsed),
                    }
                }
            };
            order.push(origin.to_owned());
            for issue in &file.issues {
                if issue.is_warning() {
                    warnings.push(issue.clone());
                } else {
                    failed = true;
                }
            }
        }
        let seen: HashSet<&str> = order.iter().map(String::as_str).collect();
        let before = self.files.len();
        self.files.retain(|origin, file| {
            let kept = seen.contains(origin.as_str());
            if !kept {
                gone.append(&mut file.objects);
            }
            kept
        });
        self.changed = !self.loaded || !parsed_now.is_empty() || self.files.len() != before;
        self.loaded = true;
        let last = self.last.take();
        if failed {
            return Err(self.load_from_scratch(&order).err().unwrap_or_default());
        }
        let store = match last {
            Some(last) if gone.is_empty() && parsed_now.is_empty() => last,
            last => match last
                .and_then(|store| self.patch(Arc::unwrap_or_clone(store), &gone, &parsed_now))
            {
                Some(store) => Arc::new(store),
                None => Arc::new(self.load_from_scratch(&order)?),
            },
        };
        self.last = Some(store.clone());
        Ok((store, warnings))
    }

    /// `store` without the objects `gone` and with those of the files `parsed`, or `None`
    /// when one of those takes a place already taken (a duplicate: the load from scratch names
    /// both places).
    fn patch(&self, mut store: Store, gone: &[Parsed], parsed: &[String]) -> Option<Store> {
        for old in gone {
            slot::remove(&mut store, &old.object);
        }
        for origin in parsed {
            for new in &self.files.get(origin)?.objects {
                if slot::is_taken(&store, &new.object) {
                    return None;
                }
                slot::insert(&mut store, new.object.clone());
            }
        }
        Some(store)
    }

    /// The objects of the files `order` names, in that order, loaded into an empty store; or
    /// every error, file by file: its parse errors, then the duplicates it defines.
    fn load_from_scratch(&self, order: &[String]) -> Result<Store, Vec<LoadError>> {
        let mut loader = Loader::default();
        let mut errors = Vec::new();
        for file in order.iter().filter_map(|origin| self.files.get(origin)) {
            errors.extend(
                file.issues
                    .iter()
                    .filter(|issue| !issue.is_warning())
                    .map(|issue| LoadError::Parse(issue.clone())),
            );
            for parsed in &file.objects {
                if let Err(e) = loader.insert(parsed.clone()) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(loader.store)
        } else {
            Err(errors)
        }
    }
}

/// Whether a file's text changed is decided by its length and hash, for every file on every
/// read: foldhash, twice as fast as SipHash on megabytes of YAML (`docs/benchmarks.md`, "Route
/// propagation at 5,000 routes: the cost of each change"). A fixed seed, so the same text
/// always hashes alike.
fn hash(text: &str) -> (usize, u64) {
    use std::hash::BuildHasher;
    (
        text.len(),
        foldhash::quality::FixedState::with_seed(0).hash_one(text),
    )
}

/// Inserts parsed objects into a store, remembering where each came from to report
/// duplicates.
#[derive(Default)]
struct Loader {
    store: Store,
    origins: HashMap<(&'static str, String), String>,
}

impl Loader {
    fn insert(&mut self, parsed: Parsed) -> Result<(), LoadError> {
        let Parsed { object, origin } = parsed;
        let kind = object.kind();
        let key = object.key_string();
        match self.origins.entry((kind, key.clone())) {
            Entry::Occupied(first) => {
                return Err(LoadError::Duplicate {
                    kind,
                    key,
                    first: first.get().clone(),
                    second: origin,
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(origin);
            }
        }
        slot::insert(&mut self.store, object);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectKey;

    #[test]
    fn duplicates_name_both_places() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let errors = load_store([("a.yaml", doc), ("b.yaml", doc)]).expect_err("duplicate");
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.contains("a.yaml:1") && message.contains("b.yaml:1"),
            "{message}"
        );
    }

    #[test]
    fn the_cache_reparses_only_changed_files_and_forgets_removed_ones() {
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n");
        let mut cache = ParseCache::default();
        let (store, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("b"))])
            .expect("loads");
        assert_eq!(store.services.len(), 2);
        let (store, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("c"))])
            .expect("loads");
        let names: Vec<&str> = store.services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        let (store, _) = cache.load([("a.yaml", svc("a"))]).expect("loads");
        assert_eq!(store.services.len(), 1);
        assert_eq!(cache.files.len(), 1);
        // A broken file is an error every time it is loaded, cached or not.
        assert!(cache.load([("a.yaml", "kind: [".to_owned())]).is_err());
        assert!(cache.load([("a.yaml", "kind: [".to_owned())]).is_err());
    }

    /// The cache holds the store it returned, not a copy: a read in which no file changed
    /// returns that store itself, and a change while it is in use leaves it as it was.
    #[test]
    fn the_store_returned_is_kept_shared_and_left_alone_by_a_change() {
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n");
        let mut cache = ParseCache::default();
        let (in_use, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("b"))])
            .expect("loads");
        let (again, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("b"))])
            .expect("loads");
        assert!(
            Arc::ptr_eq(&in_use, &again),
            "an unchanged read copied the store"
        );
        drop(again);
        let (changed, _) = cache
            .load([("a.yaml", svc("a")), ("b.yaml", svc("c"))])
            .expect("loads");
        let names = |store: &Store| -> Vec<String> {
            store.services.keys().map(|k| k.name.clone()).collect()
        };
        assert_eq!(names(&changed), ["a", "c"]);
        assert_eq!(names(&in_use), ["a", "b"], "the store in use was patched");
    }

    #[test]
    fn changed_says_whether_the_files_differ_from_the_last_load() {
        let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let mut cache = ParseCache::default();
        let mut changed = |files: &[(&str, &str)]| {
            let _ = cache.load(files.iter().copied());
            cache.changed()
        };
        assert!(changed(&[("a.yaml", svc)]), "the first load");
        assert!(!changed(&[("a.yaml", svc)]));
        assert!(changed(&[("a.yaml", svc), ("b.yaml", "")]), "a file added");
        assert!(
            changed(&[("b.yaml", ""), ("c.yaml", svc)]),
            "a file renamed"
        );
        assert!(changed(&[("c.yaml", svc)]), "a file removed");
        assert!(changed(&[("c.yaml", "kind: [")]), "a text changed");
        assert!(!changed(&[("c.yaml", "kind: [")]), "the same broken file");
        assert!(changed(&[("c.yaml", svc)]), "mended");
    }

    #[test]
    fn objects_without_namespace_are_in_default() {
        let doc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
        let (store, warnings) = load_store([("a.yaml", doc)]).expect("loads");
        assert!(warnings.is_empty());
        assert!(store.services.contains_key(&ObjectKey::new("default", "s")));
    }
}
