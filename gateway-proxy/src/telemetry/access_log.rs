//! The access log's output: one line per request, formatted straight into a per-thread buffer
//! and written to stderr in batches.
//!
//! Through `tracing`'s formatter an access-log line cost about 17,400 instructions (its field
//! visitors, `fmt` machinery and ANSI styling) plus one `write` system call per request
//! (callgrind, `e2e/bench/run.sh --instructions-only`, docs/benchmarks.md). Here the line is
//! written by hand in the same two shapes (`--access-log-format text|json`), into a buffer
//! that only its own worker thread and the flusher touch, so the lock each takes is
//! uncontended but for the flush. A buffer is written out when it passes
//! [`FLUSH_AT`] bytes, and by a background thread every [`FLUSH_EVERY`]; [`flush`] writes
//! what is left when the proxy stops. A line is written whole by one `write`, so lines of
//! different threads never interleave, but they may reach stderr up to [`FLUSH_EVERY`] after
//! the proxy's other logs.
//!
//! The access log follows the log filter as before: `--log-level warn` or
//! `RUST_LOG=access=off` turns it off ([`configure`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::logging::LogFormat;

/// A buffer past this many bytes is written out by the thread that filled it.
pub const FLUSH_AT: usize = 32 * 1024;
/// How often the background thread writes out every buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer, for the flusher.
static BUFFERS: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());
static FLUSHER: OnceLock<()> = OnceLock::new();
/// 0: text, 1: JSON.
static FORMAT: AtomicU8 = AtomicU8::new(0);
static ENABLED: AtomicBool = AtomicBool::new(true);

thread_local! {
    static LOCAL: Buffer = register();
}

/// Sets the format, and whether the log filter lets the access log through. Called once the
/// log subscriber is installed.
pub fn configure(format: LogFormat) {
    FORMAT.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
    ENABLED.store(
        tracing::enabled!(target: super::logging::ACCESS_LOG_TARGET, tracing::Level::INFO),
        Ordering::Relaxed,
    );
}

/// Whether access-log lines are written at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Appends one access-log line, its fields written by `fields`.
pub fn write(fields: impl FnOnce(&mut Line<'_>)) {
    LOCAL.with(|buffer| {
        let mut buffer = buffer.lock();
        let json = FORMAT.load(Ordering::Relaxed) == 1;
        let mut line = Line::start(&mut buffer, json);
        fields(&mut line);
        line.finish();
        if buffer.len() >= FLUSH_AT {
            let _ = std::io::stderr().write_all(&buffer);
            buffer.clear();
        }
    });
}

/// Writes out every buffered line.
pub fn flush() {
    let buffers: Vec<Buffer> = BUFFERS.lock().clone();
    let mut out = Vec::new();
    for buffer in &buffers {
        drain_into(buffer, &mut out);
    }
}

/// Moves `buffer`'s lines into `spare` (swapping, so the buffer keeps a capacity) and writes
/// them, outside the buffer's lock.
fn drain_into(buffer: &Buffer, spare: &mut Vec<u8>) {
    {
        let mut lines = buffer.lock();
        if lines.is_empty() {
            return;
        }
        std::mem::swap(&mut *lines, spare);
    }
    let _ = std::io::stderr().write_all(spare);
    spare.clear();
}

fn register() -> Buffer {
    let buffer = Buffer::default();
    BUFFERS.lock().push(buffer.clone());
    FLUSHER.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(flusher);
    });
    buffer
}

fn flusher() {
    let mut spare = Vec::new();
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let buffers: Vec<Buffer> = BUFFERS.lock().clone();
        for buffer in &buffers {
            drain_into(buffer, &mut spare);
        }
        // Buffers of threads that ended (held only by the list and the copy above).
        BUFFERS
            .lock()
            .retain(|buffer| Arc::strong_count(buffer) > 2);
    }
}

/// One line being written: `key=value` pairs after the timestamp, level and target (as
/// `tracing`'s text format writes them), or one JSON object (as its JSON format with
/// flattened fields).
pub struct Line<'b> {
    out: &'b mut Vec<u8>,
    json: bool,
}

impl<'b> Line<'b> {
    fn start(out: &'b mut Vec<u8>, json: bool) -> Self {
        let line = Self { out, json };
        if json {
            line.out.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(line.out);
            line.out.extend_from_slice(b"\",\"level\":\"INFO\"");
        } else {
            timestamp(line.out);
            line.out.extend_from_slice(b"  INFO access:");
        }
        line
    }

    fn finish(self) {
        if self.json {
            self.out.extend_from_slice(b",\"target\":\"access\"}\n");
        } else {
            self.out.push(b'\n');
        }
    }

    fn key(&mut self, key: &str) {
        if self.json {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(key.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            self.out.push(b' ');
            self.out.extend_from_slice(key.as_bytes());
            self.out.push(b'=');
        }
    }

    /// A string written bare in text (a method, path or host), quoted in JSON.
    pub fn bare(&mut self, key: &str, value: &str) {
        self.key(key);
        if self.json {
            json_string(self.out, value);
        } else {
            self.out.extend_from_slice(value.as_bytes());
        }
    }

    /// A string quoted in both formats.
    pub fn quoted(&mut self, key: &str, value: &str) {
        self.key(key);
        if self.json {
            json_string(self.out, value);
        } else if value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
        {
            // What `{:?}` writes for it, without the `fmt` machinery.
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    pub fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[at..]);
    }

    pub fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }
}

/// A JSON string: quoted, with `"`, `\` and control characters escaped.
fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// One line, rendered into a new buffer (tests).
#[cfg(test)]
pub fn render(json: bool, fields: impl FnOnce(&mut Line<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = Line::start(&mut out, json);
    fields(&mut line);
    line.finish();
    out
}

/// RFC 3339 in UTC with microseconds (`2026-12-05T19:33:35.858232Z`), the date and time of
/// the second made once per second per thread.
fn timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs();
    let text = SECOND.with(|cached| {
        let (at, text) = cached.get();
        if at == seconds {
            return text;
        }
        let text = date_time(seconds);
        cached.set((seconds, text));
        text
    });
    out.extend_from_slice(&text);
    out.push(b'.');
    let micros = now.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time in seconds.
fn date_time(seconds: u64) -> [u8; 19] {
    let mut text = [0u8; 19];
    let written =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string();
    // `2026-12-05T19:33:35Z`: everything but the `Z`.
    for (to, from) in text.iter_mut().zip(written.bytes()) {
        *to = from;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: bool, fields: impl FnOnce(&mut Line<'_>)) -> String {
        String::from_utf8(render(json, fields)).unwrap()
    }

    #[test]
    fn text_lines_read_as_tracing_wrote_them() {
        let text = line(false, |l| {
            l.bare("method", "GET");
            l.number("status", 200);
            l.number("zero", 0);
            l.number("max", u64::MAX);
            l.float("duration_ms", 1.5);
            l.quoted("route", "default/web \"x\"");
            l.quoted("plain", "a b/c:1");
        });
        let (time, rest) = text.split_once("  ").unwrap();
        assert_eq!(time.len(), 27, "{time}");
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        assert_eq!(
            rest,
            "INFO access: method=GET status=200 zero=0 max=18446744073709551615 duration_ms=1.5 route=\"default/web \\\"x\\\"\" plain=\"a b/c:1\"\n"
        );
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let text = line(true, |l| {
            l.bare("path", "/a\"b\\c\u{1}\n");
            l.number("bytes", 42);
            l.float("duration_ms", 0.25);
            l.quoted("upstream", "10.0.0.1:80");
        });
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["path"], "/a\"b\\c\u{1}\n");
        assert_eq!(value["bytes"], 42);
        assert_eq!(value["duration_ms"], 0.25);
        assert_eq!(value["upstream"], "10.0.0.1:80");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "access");
        let time = value["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn the_cached_second_is_the_clock_s() {
        assert_eq!(&date_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&date_time(1_796_498_015), b"2026-12-05T19:13:35");
    }
}
