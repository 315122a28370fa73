//! The file source: every `*.yaml` / `*.yml` under a directory, recursively, watched for changes.
//!
//! Each change re-reads the directory and publishes either the complete set of objects or, when
//! any file is invalid, a rejection naming every problem (the control loop keeps the last good
//! configuration). Bursts of file events are coalesced before reading: the directory is read
//! once no file is being written ([`Pending`]), so a file renamed into place or closed after
//! writing is read at once, and one still open for writing is waited for.
//!
//! Only regular files are read (symlinks are followed, as ConfigMap volumes need, but must end
//! at a regular file), each at most [`MAX_FILE_BYTES`] and all together at most
//! [`MAX_TOTAL_BYTES`]; a FIFO, a device or a symlink loop is refused by name and never opened
//! in a way that could block or read without end.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::SourceUpdate;
use gantry_translate::store::load::ParseCache;

/// While a file is being written: how long the directory must be quiet before it is read
/// anyway (a writer that never closes the file, a symlink created in place), and the longest a
/// burst can delay a read.
const QUIET: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(100);

/// The largest config file read (8 MiB); a larger one is refused.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The most bytes read from all config files of one directory together (64 MiB).
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest directory nesting followed under the config directory.
pub const MAX_DEPTH: usize = 16;

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

/// Why one config file (or directory) under the config directory was not read. Each names
/// the path; any of them rejects the whole directory, as an invalid file does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: cannot read: {message}")]
    Io { path: String, message: String },
    #[error(
        "{path}: not a regular file ({what}); config files must be regular files or symlinks to them"
    )]
    NotRegular { path: String, what: &'static str },
    #[error(
        "{path}: {size} bytes is larger than the {limit}-byte limit for one config file; split it"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "{path}: the config files together pass the {limit}-byte limit; remove files from the config directory"
    )]
    TotalTooLarge { path: String, limit: u64 },
    #[error(
        "{path}: not UTF-8 text (invalid byte at line {line}, column {column}); config files must be UTF-8"
    )]
    NotUtf8 {
        path: String,
        line: usize,
        column: usize,
    },
    #[error("{path}: a symlink loop (this directory contains itself); remove the link")]
    Loop { path: String },
    #[error("{path}: nested more than {limit} directories deep; not read")]
    TooDeep { path: String, limit: usize },
}

/// What one read of the config directory found: the text of every readable config file as
/// `(path, text)`, sorted by path, and every file that could not be read.
#[derive(Debug, Default)]
pub struct DirContents {
    pub files: Vec<(String, String)>,
    pub errors: Vec<ConfigFileError>,
}

/// Reads every config file under `dir`, sorted by path. Names that start with `.` are
/// skipped: editor swap files, and the `..data` directories Kubernetes uses for atomically
/// updated ConfigMap volumes (whose files are also linked at the top level). Fails only when
/// `dir` itself cannot be listed.
pub fn read_dir(dir: &Path) -> std::io::Result<DirContents> {
    let mut contents = DirContents::default();
    let mut paths = Vec::new();
    let top = std::fs::metadata(dir)?;
    let mut ancestors = vec![(top.dev(), top.ino())];
    collect(dir, &mut ancestors, &mut paths, &mut contents.errors);
    paths.sort();
    let mut total = 0u64;
    for path in paths {
        let name = path.display().to_string();
        if total > MAX_TOTAL_BYTES {
            contents.errors.push(ConfigFileError::TotalTooLarge {
                path: name,
                limit: MAX_TOTAL_BYTES,
            });
            break;
        }
        match read_file(&path, &name) {
            Ok(text) => {
                total += text.len() as u64;
                if total > MAX_TOTAL_BYTES {
                    contents.errors.push(ConfigFileError::TotalTooLarge {
                        path: name,
                        limit: MAX_TOTAL_BYTES,
                    });
                    break;
                }
                contents.files.push((name, text));
            }
            Err(error) => contents.errors.push(error),
        }
    }
    Ok(contents)
}

/// Collects the config file paths under `dir`. `ancestors` holds the device and inode of
/// every directory from the config directory down to `dir`, to refuse a symlink loop.
fn collect(
    dir: &Path,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Vec<PathBuf>,
    errors: &mut Vec<ConfigFileError>,
) {
    let io = |path: &Path, error: std::io::Error| ConfigFileError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => return errors.push(io(dir, error)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                errors.push(io(dir, error));
                continue;
            }
        };
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks, so linked files and directories are read too.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling link
        };
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                errors.push(ConfigFileError::Loop {
                    path: path.display().to_string(),
                });
            } else if ancestors.len() > MAX_DEPTH {
                errors.push(ConfigFileError::TooDeep {
                    path: path.display().to_string(),
                    limit: MAX_DEPTH,
                });
            } else {
                ancestors.push(id);
                collect(&path, ancestors, out, errors);
                ancestors.pop();
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Reads one config file: a regular file (after symlinks) of at most [`MAX_FILE_BYTES`], in
/// UTF-8. The file is opened without blocking (a FIFO swapped in after the check cannot hang
/// the reader), checked again through the open handle, and read through a limit, so a file
/// that grows while it is read still cannot make it read more than the limit.
fn read_file(path: &Path, name: &str) -> Result<String, ConfigFileError> {
    let io = |error: std::io::Error| ConfigFileError::Io {
        path: name.to_owned(),
        message: error.to_string(),
    };
    let regular = |meta: &std::fs::Metadata| -> Result<(), ConfigFileError> {
        if meta.is_file() {
            return Ok(());
        }
        Err(ConfigFileError::NotRegular {
            path: name.to_owned(),
            what: file_type_name(meta),
        })
    };
    regular(&std::fs::metadata(path).map_err(io)?)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    regular(&meta)?;
    let too_large = |size| ConfigFileError::TooLarge {
        path: name.to_owned(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        ConfigFileError::NotUtf8 {
            path: name.to_owned(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            column: valid.len() - line_start + 1,
        }
    })
}

fn file_type_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads and parses the directory into one update.
pub fn load(dir: &Path) -> SourceUpdate {
    match read_dir(dir) {
        Ok(contents) => parse(contents, &mut ParseCache::default()),
        Err(error) => unreadable(dir, &error),
    }
}

/// Parses what was read. Files that could not be read reject the update, together with every
/// problem of the files that could.
fn parse(contents: DirContents, cache: &mut ParseCache) -> SourceUpdate {
    let mut errors: Vec<String> = contents.errors.iter().map(ToString::to_string).collect();
    match cache.load(contents.files) {
        Ok((store, warnings)) if errors.is_empty() => SourceUpdate::Objects {
            store,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        },
        Ok((_, warnings)) => SourceUpdate::Rejected {
            errors,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        },
        Err(load_errors) => {
            errors.extend(load_errors.iter().map(ToString::to_string));
            SourceUpdate::Rejected {
                errors,
                warnings: Vec::new(),
            }
        }
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
    let (events_tx, mut events) = mpsc::unbounded_channel::<Signal>();
    let root = dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let signals = match &event {
            Ok(e) => Signal::of(&root, e),
            Err(_) => vec![Signal::Changed],
        };
        for signal in signals {
            let _ = events_tx.send(signal);
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
    while let Some(first) = events.recv().await {
        coalesce(first, &mut events).await;
        if updates.is_closed() {
            break;
        }
        publish(&dir, &updates, &mut state).await;
    }
    drop(watcher);
    Ok(())
}

/// What a file event says about when the directory may be read.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// A file is being written (created, or its data changed): wait for it to be closed.
    Writing(PathBuf),
    /// A file is complete (closed after writing) or gone (renamed away, removed).
    Written(PathBuf),
    /// Anything else that may change what is read (a rename into place, a directory, a
    /// metadata change, an error of the watcher).
    Changed,
}

impl Signal {
    /// The signals of one watcher event. Reads (opening, closing unwritten) are ours or
    /// harmless: none. Writes to hidden names (`.`-prefixed under `root`), which are never
    /// read, are none either; their renames (a temporary file, ConfigMap's `..data`) are not.
    fn of(root: &Path, event: &notify::Event) -> Vec<Self> {
        let hidden = |path: &PathBuf| {
            path.strip_prefix(root).is_ok_and(|relative| {
                relative
                    .components()
                    .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b"."))
            })
        };
        let each = |make: fn(PathBuf) -> Self| -> Vec<Self> {
            event
                .paths
                .iter()
                .filter(|path| !hidden(path))
                .map(|path| make(path.clone()))
                .collect()
        };
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => each(Self::Written),
            EventKind::Access(_) => Vec::new(),
            EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
                each(Self::Writing)
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                let mut signals: Vec<Self> =
                    event.paths.iter().cloned().map(Self::Written).collect();
                signals.push(Self::Changed);
                signals
            }
            _ => vec![Self::Changed],
        }
    }
}

/// The files being written since the last read. The directory is read when none is left.
#[derive(Debug, Default)]
struct Pending {
    writing: HashSet<PathBuf>,
}

impl Pending {
    fn note(&mut self, signal: Signal) {
        match signal {
            Signal::Writing(path) => {
                self.writing.insert(path);
            }
            Signal::Written(path) => {
                self.writing.remove(&path);
            }
            Signal::Changed => {}
        }
    }

    /// Nothing is being written: read now.
    fn settled(&self) -> bool {
        self.writing.is_empty()
    }
}

/// Waits until no file is being written (every file written since `first` was closed, or
/// renamed or removed), no event arrived for [`QUIET`], or [`MAX_DELAY`] passed. Events already
/// queued are taken first, so a burst is read once.
async fn coalesce(first: Signal, events: &mut mpsc::UnboundedReceiver<Signal>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    let mut pending = Pending::default();
    pending.note(first);
    loop {
        while let Ok(signal) = events.try_recv() {
            pending.note(signal);
        }
        if pending.settled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(QUIET) => return,
            _ = tokio::time::sleep_until(deadline) => return,
            more = events.recv() => match more {
                Some(signal) => pending.note(signal),
                None => return,
            },
        }
    }
}

/// What the watcher remembers between reads.
#[derive(Default)]
struct PublishState {
    /// Hash of the files that could not be read at the last read; `None` after the
    /// directory itself could not be read.
    unreadable: Option<u64>,
    /// Says whether the readable files changed since the last read.
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
            Ok(contents) => {
                let mut h = DefaultHasher::new();
                contents.errors.hash(&mut h);
                let unreadable = Some(h.finish());
                let update = parse(contents, &mut owned.cache);
                if owned.cache.changed() || unreadable != owned.unreadable {
                    owned.unreadable = unreadable;
                    Some(update)
                } else {
                    None
                }
            }
            Err(error) => {
                owned.unreadable = None;
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

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_testkit::harness::tempdir::TempDir;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";

    fn errors_of(dir: &Path) -> Vec<String> {
        match load(dir) {
            SourceUpdate::Rejected { errors, .. } => errors,
            SourceUpdate::Objects { .. } => panic!("{} was accepted", dir.display()),
        }
    }

    fn one_error_naming(dir: &Path, file: &str, words: &str) {
        let errors = errors_of(dir);
        let path = dir.join(file).display().to_string();
        assert!(
            errors.len() == 1 && errors[0].starts_with(&path) && errors[0].contains(words),
            "expected one error naming {path} and saying {words:?}: {errors:#?}"
        );
    }

    #[test]
    fn a_fifo_is_refused_by_name_without_blocking() {
        let dir = TempDir::new("gantry-files");
        std::fs::write(dir.path().join("ok.yaml"), SERVICE).expect("write");
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.yaml"))
            .status()
            .expect("mkfifo");
        assert!(status.success());
        one_error_naming(dir.path(), "pipe.yaml", "a FIFO");
    }

    #[test]
    fn a_symlink_to_a_device_is_refused_by_name() {
        let dir = TempDir::new("gantry-files");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("symlink");
        one_error_naming(dir.path(), "zero.yaml", "a character device");
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_read() {
        let dir = TempDir::new("gantry-files");
        std::fs::write(dir.path().join(".target"), SERVICE).expect("write");
        std::os::unix::fs::symlink(dir.path().join(".target"), dir.path().join("link.yaml"))
            .expect("symlink");
        let contents = read_dir(dir.path()).expect("reads");
        assert_eq!(contents.errors, []);
        assert_eq!(contents.files.len(), 1);
        assert_eq!(contents.files[0].1, SERVICE);
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_by_name() {
        let dir = TempDir::new("gantry-files");
        let file = File::create(dir.path().join("big.yaml")).expect("create");
        // Sparse: no disk space used.
        file.set_len(MAX_FILE_BYTES + 1).expect("set_len");
        one_error_naming(dir.path(), "big.yaml", "larger than the 8388608-byte limit");
        file.set_len(MAX_FILE_BYTES).expect("set_len");
        let contents = read_dir(dir.path()).expect("reads");
        assert_eq!(contents.errors, [], "a file of exactly the limit is read");
    }

    #[test]
    fn files_over_the_total_limit_are_refused() {
        let dir = TempDir::new("gantry-files");
        let files = MAX_TOTAL_BYTES / MAX_FILE_BYTES + 1;
        for i in 0..files {
            let file = File::create(dir.path().join(format!("f{i:02}.yaml"))).expect("create");
            file.set_len(MAX_FILE_BYTES).expect("set_len");
        }
        let contents = read_dir(dir.path()).expect("reads");
        let last = dir.path().join(format!("f{:02}.yaml", files - 1));
        assert_eq!(
            contents.errors,
            [ConfigFileError::TotalTooLarge {
                path: last.display().to_string(),
                limit: MAX_TOTAL_BYTES
            }]
        );
    }

    #[test]
    fn invalid_utf8_names_the_file_line_and_column() {
        let dir = TempDir::new("gantry-files");
        std::fs::write(dir.path().join("ok.yaml"), SERVICE).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/bad.yaml"), b"a: 1\nb: \xff\n").expect("write");
        one_error_naming(dir.path(), "sub/bad.yaml", "line 2, column 4");
    }

    #[test]
    fn a_symlink_loop_is_refused_by_name() {
        let dir = TempDir::new("gantry-files");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/ok.yaml"), SERVICE).expect("write");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/up")).expect("symlink");
        one_error_naming(dir.path(), "sub/up", "symlink loop");
    }

    #[test]
    fn unreadable_files_and_parse_errors_are_reported_together() {
        let dir = TempDir::new("gantry-files");
        std::fs::write(dir.path().join("broken.yaml"), "kind: [").expect("write");
        std::os::unix::fs::symlink("/dev/null", dir.path().join("null.yaml")).expect("symlink");
        let errors = errors_of(dir.path());
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.contains("null.yaml")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("broken.yaml:1")),
            "{errors:#?}"
        );
    }

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(kind), |e, p| {
            e.add_path(PathBuf::from(p))
        })
    }

    /// Feeds the signals of `events` (as the inotify watcher reports them) to a fresh
    /// [`Pending`], and says after each event whether the directory would be read.
    fn settled_after_each(events: &[notify::Event]) -> Vec<bool> {
        let root = Path::new("/config");
        let mut pending = Pending::default();
        let mut any = false;
        events
            .iter()
            .map(|e| {
                for signal in Signal::of(root, e) {
                    any = true;
                    pending.note(signal);
                }
                any && pending.settled()
            })
            .collect()
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
    const CLOSE_WRITE: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

    #[test]
    fn a_file_written_in_place_is_read_once_it_is_closed() {
        assert_eq!(
            settled_after_each(&[
                event(EventKind::Create(CreateKind::File), &["/config/a.yaml"]),
                event(WRITE, &["/config/a.yaml"]),
                event(WRITE, &["/config/a.yaml"]),
                event(CLOSE_WRITE, &["/config/a.yaml"]),
            ]),
            [false, false, false, true]
        );
    }

    #[test]
    fn a_read_waits_for_every_file_being_written() {
        assert_eq!(
            settled_after_each(&[
                event(WRITE, &["/config/a.yaml"]),
                event(WRITE, &["/config/sub/b.yaml"]),
                event(CLOSE_WRITE, &["/config/a.yaml"]),
                event(
                    EventKind::Remove(notify::event::RemoveKind::File),
                    &["/config/sub/b.yaml"]
                ),
            ]),
            [false, false, false, true]
        );
    }

    #[test]
    fn a_temporary_file_renamed_into_place_is_read_at_the_rename() {
        // Writing the hidden temporary file says nothing (it is never read); its rename is
        // the change.
        let tmp = "/config/.new.yaml.tmp";
        assert_eq!(
            settled_after_each(&[
                event(EventKind::Create(CreateKind::File), &[tmp]),
                event(WRITE, &[tmp]),
                event(CLOSE_WRITE, &[tmp]),
                event(
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    &[tmp]
                ),
            ]),
            [false, false, false, true]
        );
        assert_eq!(
            settled_after_each(&[event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/config/new.yaml"]
            )]),
            [true]
        );
    }

    #[test]
    fn a_config_map_volume_update_is_read_when_data_is_swapped() {
        // The kubelet writes a new hidden directory, links `..data_tmp` to it and renames
        // that over `..data`.
        let symlink_swap = [
            event(
                EventKind::Create(CreateKind::Folder),
                &["/config/..2026_12_06"],
            ),
            event(
                EventKind::Create(CreateKind::File),
                &["/config/..2026_12_06/routes.yaml"],
            ),
            event(CLOSE_WRITE, &["/config/..2026_12_06/routes.yaml"]),
            event(EventKind::Create(CreateKind::File), &["/config/..data_tmp"]),
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                &["/config/..data_tmp"],
            ),
        ];
        // The new directory is a change of its own (read at once, unchanged files: nothing
        // is published); the swap is read at once too.
        assert_eq!(
            settled_after_each(&symlink_swap),
            [true, true, true, true, true]
        );
        assert_eq!(
            settled_after_each(&symlink_swap[1..]),
            [false, false, false, true]
        );
    }

    #[test]
    fn reading_the_directory_says_nothing() {
        // The source's own reads open and close every file.
        let root = Path::new("/config");
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert_eq!(Signal::of(root, &event(kind, &["/config/a.yaml"])), []);
        }
    }
}
