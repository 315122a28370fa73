//! RESP2, the Redis wire format, as far as the global rate limit needs it: commands written as
//! arrays of bulk strings into a reused buffer, and replies read back (simple strings, errors,
//! integers, bulk strings and flat arrays of those).
//!
//! Hand-written because it is on the request path of every global rule: the `redis` crate's
//! multiplexed connection and its combinator parser cost about 22,000 instructions per take
//! (`gantry-bench --instructions-only`, "global rate limit"), more than the rest of the request.

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `-ERR …`, `-NOSCRIPT …`: the whole line.
    Error(String),
    Integer(i64),
    /// `$-1` (and `*-1`) is `None`.
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// The server sent something that is not RESP2 (or nested deeper than a flat array).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("Redis sent a malformed reply ({0})")]
pub struct Malformed(pub &'static str);

/// Digits of a shared command's count ([`Command::count`]), and the largest count they hold.
pub const COUNT_DIGITS: usize = 6;
pub const MAX_COUNT: u32 = 999_999;

/// Rewrites the count that ends `command` (written by [`Command::count`]) as `count`
/// (at most [`MAX_COUNT`]).
pub fn set_count(command: &mut [u8], count: u32) {
    debug_assert!(count <= MAX_COUNT);
    let end = command.len() - 2;
    let mut rest = count;
    for digit in command[end - COUNT_DIGITS..end].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// Writes a command: `*<n>` then each argument as a bulk string.
pub struct Command<'b> {
    out: &'b mut Vec<u8>,
}

impl<'b> Command<'b> {
    /// Starts a command of `arguments` parts (the command's name counts as one) at the end of
    /// `out` (after the commands before it, in a pipeline).
    pub fn new(out: &'b mut Vec<u8>, arguments: usize) -> Self {
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(arguments).as_bytes());
        out.extend_from_slice(b"\r\n");
        Self { out }
    }

    /// Goes on writing arguments after what `out` holds (a command's first arguments, written
    /// once and copied).
    pub fn append(out: &'b mut Vec<u8>) -> Self {
        Self { out }
    }

    /// One argument made of `parts` written one after the other (a key and its prefix).
    pub fn parts(mut self, parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.length(len);
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }

    pub fn arg(self, argument: &[u8]) -> Self {
        self.parts(&[argument])
    }

    pub fn int(mut self, value: u64) -> Self {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value).as_bytes();
        self.length(digits.len());
        self.out.extend_from_slice(digits);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// The last argument of a command that several takes may share: a count of 1, written
    /// with [`COUNT_DIGITS`] digits so that the pipeline can raise it in place
    /// ([`set_count`]).
    pub fn count(mut self) {
        self.length(COUNT_DIGITS);
        self.out.extend_from_slice(b"000001\r\n");
    }

    /// `$<len>\r\n`.
    fn length(&mut self, len: usize) {
        let mut digits = itoa::Buffer::new();
        self.out.push(b'$');
        self.out.extend_from_slice(digits.format(len).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply from the start of `input`: `Ok(None)` while it is incomplete, else the
/// reply and how many bytes it took.
pub fn parse(input: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    parse_at(input, 0, true)
}

fn parse_at(input: &[u8], at: usize, nest: bool) -> Result<Option<(Reply, usize)>, Malformed> {
    let Some((line, next)) = line(input, at)? else {
        return Ok(None);
    };
    let (&kind, rest) = line.split_first().ok_or(Malformed("an empty line"))?;
    match kind {
        b'+' => Ok(Some((Reply::Simple(text(rest)), next))),
        b'-' => Ok(Some((Reply::Error(text(rest)), next))),
        b':' => Ok(Some((Reply::Integer(integer(rest)?), next))),
        b'$' => {
            let len = integer(rest)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| Malformed("a bulk string's length"))?;
            let end = next + len;
            if input.len() < end + 2 {
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(Malformed("a bulk string not ended by CRLF"));
            }
            Ok(Some((
                Reply::Bulk(Some(input[next..end].to_vec())),
                end + 2,
            )))
        }
        b'*' => {
            let count = integer(rest)?;
            if count < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if !nest {
                return Err(Malformed("a nested array"));
            }
            let count = usize::try_from(count).map_err(|_| Malformed("an array's length"))?;
            // A reply this client asks for has at most a handful of elements; a larger count
            // is not trusted for the allocation.
            let mut items = Vec::with_capacity(count.min(8));
            let mut at = next;
            for _ in 0..count {
                let Some((item, after)) = parse_at(input, at, false)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            Ok(Some((Reply::Array(items), at)))
        }
        _ => Err(Malformed("an unknown type byte")),
    }
}

/// The line starting at `at` without its CRLF, and where the next one starts (`None` until
/// it is whole).
fn line(input: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Malformed> {
    let rest = input.get(at..).unwrap_or_default();
    // No line holds an LF (a bulk string's bytes are not read as lines).
    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    match newline.checked_sub(1) {
        Some(end) if rest[end] == b'\r' => Ok(Some((&rest[..end], at + newline + 1))),
        _ => Err(Malformed("a line not ended by CRLF")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn integer(bytes: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(Malformed("an integer"));
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(Malformed("an integer"));
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(digit - b'0')))
            .ok_or(Malformed("an integer"))?;
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        let mut out = b"+".to_vec();
        Command::new(&mut out, 4)
            .arg(b"EVALSHA")
            .parts(&[b"gantry:rl:", b"k\r\n"])
            .int(0)
            .int(1_000_000);
        assert_eq!(
            out,
            b"+*4\r\n$7\r\nEVALSHA\r\n$13\r\ngantry:rl:k\r\n\r\n$1\r\n0\r\n$7\r\n1000000\r\n"
        );
    }

    #[test]
    fn a_shared_count_is_raised_in_place() {
        let mut out = Vec::new();
        Command::new(&mut out, 2).arg(b"X").count();
        assert_eq!(out, b"*2\r\n$1\r\nX\r\n$6\r\n000001\r\n");
        set_count(&mut out, 42);
        assert_eq!(out, b"*2\r\n$1\r\nX\r\n$6\r\n000042\r\n");
        set_count(&mut out, MAX_COUNT);
        assert_eq!(out, b"*2\r\n$1\r\nX\r\n$6\r\n999999\r\n");
    }

    #[test]
    fn each_reply_kind_is_read_with_its_length() {
        let cases: [(&[u8], Reply); 7] = [
            (b"+OK\r\n", Reply::Simple("OK".into())),
            (
                b"-NOSCRIPT No matching script\r\n",
                Reply::Error("NOSCRIPT No matching script".into()),
            ),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Bulk(None)),
            (
                b"*3\r\n:1\r\n:41\r\n$2\r\nhi\r\n",
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Integer(41),
                    Reply::Bulk(Some(b"hi".to_vec())),
                ]),
            ),
        ];
        for (wire, reply) in cases {
            let mut input = wire.to_vec();
            input.extend_from_slice(b":7\r\n");
            assert_eq!(
                parse(&input),
                Ok(Some((reply, wire.len()))),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let wire = b"*3\r\n:1\r\n:41\r\n$2\r\nhi\r\n";
        for end in 0..wire.len() {
            assert_eq!(parse(&wire[..end]), Ok(None), "{end} bytes");
        }
    }

    #[test]
    fn what_is_not_resp2_is_refused() {
        for wire in [
            &b"!5\r\n"[..],
            b":12a\r\n",
            b":\r\n",
            b":99999999999999999999\r\n",
            b"$2\r\nabc\r\n",
            b"*1\r\n*1\r\n:1\r\n",
            b"\r\n",
            b"+OK\n",
        ] {
            assert!(parse(wire).is_err(), "{}", String::from_utf8_lossy(wire));
        }
    }
}
