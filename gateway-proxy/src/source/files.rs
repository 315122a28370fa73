//! The file source: every `*.yaml` / `*.yml` under a directory, recursively, watched for changes.
//!
//! Each change re-reads the directory and publishes either the complete set of objects or, when
//! any file is invalid, a rejection naming every problem (the control loop keeps the last good
//! configuration). Bursts of file events are coalesced before reading.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::SourceUpdate;
use gantry_translate::store::load::ParseCache;

/// How long the directory must be quiet before it is read, and the longest a burst can delay
/// a read.
const QUIET: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(100);

/// Errors that stop the file source from starting.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("config directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch {dir}: {source}")]
    Watch { dir: PathBuf, source: notify::Error },
}

/// Reads every config file under `dir`, sorted by path, as `(path, text)` pairs. Names that
/// start with `.` are skipped: editor swap files, and the `..data` directories Kubernetes uses
/// for atomically updated ConfigMap volumes (whose files are also linked at the top level).
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks, so linked files and directories are read too.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling link
        };
        if meta.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads and parses the directory into one update.
pub fn load(dir: &Path) -> SourceUpdate {
    match read_dir(dir) {
        Ok(files) => parse(files, &mut ParseCache::default()),
        Err(error) => unreadable(dir, &error),
    }
}

fn parse(files: Vec<(String, String)>, cache: &mut ParseCache) -> SourceUpdate {
    match cache.load(files) {
        Ok((store, warnings)) => SourceUpdate::Objects {
            store: Arc::new(store),
            warnings: warnings.iter().map(ToString::to_string).collect(),
        },
        Err(errors) => SourceUpdate::Rejected {
            errors: errors.iter().map(ToString::to_string).collect(),
            warnings: Vec::new(),
        },
    }
}

fn unreadable(dir: &Path, error: &std::io::Error) -> SourceUpdate {
    SourceUpdate::Rejected {
        errors: vec![format!("reading {}: {error}", dir.display())],
        warnings: Vec::new(),
    }
}

/// Loads `dir` once, publishes it, then watches it and publishes every change until the
/// receiver side is dropped.
pub async fn run(
    dir: PathBuf,
    updates: watch::Sender<Option<SourceUpdate>>,
) -> Result<(), FileSourceError> {
    std::fs::metadata(&dir).map_err(|source| FileSourceError::Dir {
        dir: dir.clone(),
        source,
    })?;
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => !matches!(e.kind, EventKind::Access(_)),
            Err(_) => true,
        };
        if relevant {
            let _ = events_tx.send(());
        }
    })
    .map_err(|source| FileSourceError::Watch {
        dir: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| FileSourceError::Watch {
            dir: dir.clone(),
            source,
        })?;

    let mut state = Some(PublishState::default());
    publish(&dir, &updates, &mut state).await;
    while events.recv().await.is_some() {
        coalesce(&mut events).await;
        if updates.is_closed() {
            break;
        }
        publish(&dir, &updates, &mut state).await;
    }
    drop(watcher);
    Ok(())
}

/// Waits until no event arrived for [`QUIET`], or [`MAX_DELAY`] passed.
async fn coalesce(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let quiet = tokio::time::sleep(QUIET);
        tokio::select! {
            _ = quiet => return,
            _ = tokio::time::sleep_until(deadline) => return,
            more = events.recv() => if more.is_none() { return },
        }
    }
}

/// What the watcher remembers between reads.
#[derive(Default)]
struct PublishState {
    /// Hash of every file's path and text at the last read.
    fingerprint: Option<u64>,
    cache: ParseCache,
}

/// Reads the directory and publishes it unless nothing changed since the last read.
async fn publish(
    dir: &Path,
    updates: &watch::Sender<Option<SourceUpdate>>,
    state: &mut Option<PublishState>,
) {
    let dir = dir.to_owned();
    let mut owned = state.take().unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || {
        let update = match read_dir(&dir) {
            Ok(files) => {
                let mut h = DefaultHasher::new();
                files.hash(&mut h);
                let fingerprint = Some(h.finish());
                if fingerprint == owned.fingerprint {
                    None
                } else {
                    owned.fingerprint = fingerprint;
                    Some(parse(files, &mut owned.cache))
                }
            }
            Err(error) => {
                owned.fingerprint = None;
                Some(unreadable(&dir, &error))
            }
        };
        (owned, update)
    })
    .await;
    // A panic while parsing loses the cache; the next read starts afresh.
    if let Ok((owned, update)) = result {
        *state = Some(owned);
        if let Some(update) = update {
            updates.send_replace(Some(update));
        }
    }
}
