//! `metadata.managedFields`: who owns which field, server-side apply (conflicts, `force`, removal of fields a manager stops applying) and the ownership an update takes.

use serde_json::{Value, json};

use super::fields::{self, FieldSet, Path};

/// Apply or Update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    /// `Some("status")` for writes through the status subresource.
    pub subresource: Option<String>,
    pub api_version: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// The entries of a stored object.
pub fn read(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_owned(),
            operation: if e["operation"] == "Apply" {
                Operation::Apply
            } else {
                Operation::Update
            },
            subresource: e["subresource"].as_str().map(str::to_owned),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_owned(),
            fields: fields::decode(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `entries` into `object` (dropping empty ones, as the API server does).
pub fn write(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": e.operation.name(),
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields::encode(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                entry["subresource"] = json!(sub);
            }
            entry
        })
        .collect();
    match object["metadata"].as_object_mut() {
        Some(metadata) if list.is_empty() => {
            metadata.remove("managedFields");
        }
        Some(metadata) => {
            metadata.insert("managedFields".to_owned(), Value::Array(list));
        }
        None => {}
    }
}

/// Fields another manager owns that an apply would change: `(manager, field)`.
pub type Conflicts = Vec<(String, Path)>;

/// What one write is: who, how, where, and which part of the object it may touch.
pub struct Write<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    /// Only fields this accepts are tracked (the status subresource's writes see only
    /// `status`, the main resource's never see it).
    pub scope: fn(&Path) -> bool,
}

/// Server-side apply of `config` to `live` (`None` creates): the merged object with its
/// managedFields, or the conflicts when `force` is off.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    write: &Write<'_>,
    force: bool,
) -> Result<Value, Conflicts> {
    let base = live.cloned().unwrap_or_else(|| config.clone());
    let mut entries = read(&base);
    let applied: FieldSet = fields::set_of(config)
        .into_iter()
        .filter(|p| (write.scope)(p))
        .collect();

    let mut conflicts = Conflicts::new();
    for entry in &entries {
        if entry.same_slot(write.manager, Operation::Apply, write.subresource) {
            continue;
        }
        for path in entry.fields.intersection(&applied) {
            if live.is_some() && fields::differs(&base, config, path) {
                conflicts.push((entry.manager.clone(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced: the fields change owner.
    for (manager, path) in &conflicts {
        for entry in entries.iter_mut().filter(|e| &e.manager == manager) {
            if !entry.same_slot(write.manager, Operation::Apply, write.subresource) {
                entry.fields.remove(path);
            }
        }
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| e.same_slot(write.manager, Operation::Apply, write.subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !e.same_slot(write.manager, Operation::Apply, write.subresource))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();

    let mut next = base;
    if live.is_some() {
        fields::merge_applied(&mut next, &strip_untracked(config, write.scope));
    }
    // Fields this manager applied before, no longer applies, and nobody else owns. Deepest
    // first, so an item's fields go before the item.
    // An item stays while another manager owns a field of it; an item's key fields go only
    // with the item.
    let dropped: Vec<&Path> = previous
        .difference(&applied)
        .filter(|p| !others.iter().any(|o| o.starts_with(p)) && !fields::is_key_field(p))
        .collect();
    for path in &dropped {
        let inside_dropped = dropped
            .iter()
            .any(|d| d.len() < path.len() && path.starts_with(d));
        if !inside_dropped {
            fields::remove(&mut next, path);
        }
    }

    match entries
        .iter_mut()
        .find(|e| e.same_slot(write.manager, Operation::Apply, write.subresource))
    {
        Some(entry) => {
            entry.fields = applied;
            entry.api_version = write.api_version.to_owned();
        }
        None => entries.push(Entry {
            manager: write.manager.to_owned(),
            operation: Operation::Apply,
            subresource: write.subresource.map(str::to_owned),
            api_version: write.api_version.to_owned(),
            fields: applied,
        }),
    }
    write_entries(&mut next, &entries);
    Ok(next)
}

/// Ownership after an update (create, PUT, merge patch) from `old` (`None`: created) to `new`:
/// the writer owns every field it changed, taken from whoever owned it; removed fields belong
/// to nobody. Returns `new` with its managedFields.
pub fn update(old: Option<&Value>, mut new: Value, write: &Write<'_>) -> Value {
    let empty = Value::Null;
    let before = old.unwrap_or(&empty);
    let mut entries = read(old.unwrap_or(&new));
    let now = fields::set_of(&new);
    let changed: FieldSet = now
        .iter()
        .filter(|p| (write.scope)(p) && fields::differs(before, &new, p))
        .cloned()
        .collect();
    let removed: FieldSet = fields::set_of(before)
        .into_iter()
        .filter(|p| (write.scope)(p) && !now.contains(p))
        .collect();
    for entry in &mut entries {
        entry.fields.retain(|p| !removed.contains(p));
        if !entry.same_slot(write.manager, Operation::Update, write.subresource) {
            entry.fields.retain(|p| !changed.contains(p));
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.same_slot(write.manager, Operation::Update, write.subresource))
    {
        Some(entry) => entry.fields.extend(changed),
        None => entries.push(Entry {
            manager: write.manager.to_owned(),
            operation: Operation::Update,
            subresource: write.subresource.map(str::to_owned),
            api_version: write.api_version.to_owned(),
            fields: changed,
        }),
    }
    write_entries(&mut new, &entries);
    new
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    if object["metadata"].is_object() {
        write(object, entries);
    }
}

/// `config` without the fields outside the write's scope.
fn strip_untracked(config: &Value, scope: fn(&Path) -> bool) -> Value {
    let mut out = config.clone();
    if let Some(map) = out.as_object_mut() {
        map.retain(|k, _| {
            k == "metadata"
                || k == "apiVersion"
                || k == "kind"
                || scope(&vec![fields::Element::Field(k.clone())])
        });
    }
    out
}

/// The `409` message of a failed apply.
pub fn conflict_message(conflicts: &Conflicts) -> String {
    let n = conflicts.len();
    let list: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {}", fields::display(p)))
        .collect();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        list.join("; ")
    )
}
