//! Task output to log chunks: line by line, timestamped, chunked, capped, with backpressure.
//!
//! Each line is stored as `<RFC 3339 UTC time> <O|E> <text>\n` (O = stdout, E = stderr). Bytes
//! that are not UTF-8 are replaced by U+FFFD, so a binary blob stays readable and never breaks the
//! log. A line longer than `MAX_LINE` is split. After `cap` bytes a marker line is written once and
//! further output is read and dropped, so the task never blocks on a full pipe because of us.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

/// Longest line kept whole.
pub const MAX_LINE: usize = 16 * 1024;
/// Chunks are sent at this size, or `FLUSH` after their first line, whichever comes first.
pub const CHUNK: usize = 64 * 1024;
pub const FLUSH: Duration = Duration::from_millis(100);
/// Bytes of log kept per attempt unless configured otherwise.
pub const DEFAULT_CAP: u64 = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn letter(self) -> char {
        match self {
            Stream::Stdout => 'O',
            Stream::Stderr => 'E',
        }
    }
}

/// What was logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub bytes: u64,
    pub truncated: bool,
}

/// Formats one record.
pub fn record(stream: Stream, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    format!("{} {} {}\n", Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true), stream.letter(), text)
}

/// Reads `reader` to its end, sending each line (split at `MAX_LINE`) to `lines`.
async fn read_lines<R: AsyncRead + Unpin>(reader: R, stream: Stream, lines: mpsc::Sender<(Stream, Vec<u8>)>) {
    let mut reader = BufReader::new(reader);
    loop {
        let mut line = Vec::new();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send((stream, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Pumps a child's stdout and stderr into chunks on `out` until both end. `out` is bounded: when
/// the receiver is slow, this stops reading and the child blocks on its pipe. One future, no
/// tasks of its own: the ends of the two pipes and the last chunk come through without a hand-over
/// between threads.
pub async fn pump<O, E>(stdout: O, stderr: E, cap: u64, out: mpsc::Sender<Vec<u8>>) -> LogStats
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let (tx, lines) = mpsc::channel::<(Stream, Vec<u8>)>(64);
    let ((), (), stats) = tokio::join!(
        read_lines(stdout, Stream::Stdout, tx.clone()),
        read_lines(stderr, Stream::Stderr, tx),
        chunks(lines, cap, out)
    );
    stats
}

/// Lines into chunks on `out` until every sender of `lines` is gone.
async fn chunks(mut lines: mpsc::Receiver<(Stream, Vec<u8>)>, cap: u64, out: mpsc::Sender<Vec<u8>>) -> LogStats {
    let mut stats = LogStats::default();
    let mut buf = String::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => tokio::select! {
                l = lines.recv() => l,
                () = tokio::time::sleep_until(d) => {
                    flush(&mut buf, &out).await;
                    deadline = None;
                    continue;
                }
            },
            None => lines.recv().await,
        };
        let Some((stream, line)) = next else { break };
        if stats.truncated {
            continue;
        }
        let rec = record(stream, &line);
        if stats.bytes + rec.len() as u64 > cap {
            stats.truncated = true;
            buf.push_str(&record(
                Stream::Stderr,
                format!("[orrery] log truncated after {} bytes (the limit per attempt); the rest of the output was discarded", stats.bytes).as_bytes(),
            ));
            continue;
        }
        stats.bytes += rec.len() as u64;
        buf.push_str(&rec);
        if buf.len() >= CHUNK {
            flush(&mut buf, &out).await;
            deadline = None;
        } else if deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + FLUSH);
        }
    }
    flush(&mut buf, &out).await;
    stats
}

async fn flush(buf: &mut String, out: &mpsc::Sender<Vec<u8>>) {
    if !buf.is_empty() {
        let _ = out.send(std::mem::take(buf).into_bytes()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(stdout: &'static [u8], stderr: &'static [u8], cap: u64) -> (String, LogStats) {
        let (tx, mut rx) = mpsc::channel(4);
        let pump = tokio::spawn(pump(stdout, stderr, cap, tx));
        let mut all = Vec::new();
        while let Some(c) = rx.recv().await {
            all.extend(c);
        }
        (String::from_utf8(all).unwrap(), pump.await.unwrap())
    }

    #[tokio::test]
    async fn lines_keep_their_stream_and_invalid_utf8_stays_readable() {
        let (text, stats) = collect(b"hello\nbad \xff\xfe bytes\nno newline", b"oops\n", 1 << 20).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines.iter().any(|l| l.ends_with(" O hello")));
        assert!(lines.iter().any(|l| l.ends_with(" O bad \u{FFFD}\u{FFFD} bytes")), "{text}");
        assert!(lines.iter().any(|l| l.ends_with(" O no newline")));
        assert!(lines.iter().any(|l| l.ends_with(" E oops")));
        assert!(!stats.truncated);
    }

    #[tokio::test]
    async fn output_past_the_cap_is_cut_with_a_marker() {
        let big: &'static [u8] = Box::leak(b"0123456789\n".repeat(10_000).into_boxed_slice());
        let (text, stats) = collect(big, b"", 2_000).await;
        assert!(stats.truncated);
        assert!(text.len() < 3_000, "{}", text.len());
        assert!(text.trim_end().ends_with("the rest of the output was discarded"), "{text}");
    }

    #[tokio::test]
    async fn a_very_long_line_is_split() {
        let long: &'static [u8] = Box::leak([b'x'; MAX_LINE * 2 + 10].to_vec().into_boxed_slice());
        let (text, _) = collect(long, b"", 1 << 20).await;
        assert_eq!(text.lines().count(), 3);
    }
}
