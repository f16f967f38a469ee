//! An incremental scanner that watches a forwarded SSE byte stream.
//!
//! It never changes or holds back the bytes: the stream forwards each chunk
//! as it arrives and shows it to the scanner on the way. The scanner keeps
//! only the current unfinished line, finds `data:` lines, notes `[DONE]`, and
//! parses a line only when it mentions `"usage"` (OpenAI sends usage in one
//! late chunk with `stream_options.include_usage`). OpenAI-compatible servers
//! put each event's JSON on one `data:` line; multi-line data is not joined.

use switchyard_api::common::Usage;

use crate::body::parse_usage;

/// A line longer than this is not kept (token chunks are tiny; this bounds
/// memory if an upstream sends garbage without newlines).
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct SseScanner {
    line: Vec<u8>,
    overflow: bool,
    usage: Option<Usage>,
    done: bool,
    events: u64,
}

impl SseScanner {
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(pos);
            if self.line.is_empty() {
                self.scan_line(head);
            } else {
                self.push(head);
                let line = std::mem::take(&mut self.line);
                self.scan_line(&line);
                self.line = line;
                self.line.clear();
            }
            self.overflow = false;
            chunk = &rest[1..];
        }
        self.push(chunk);
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.overflow || self.line.len() + bytes.len() > MAX_LINE {
            self.overflow = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn scan_line(&mut self, line: &[u8]) {
        if self.overflow {
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        self.events += 1;
        if data == b"[DONE]" {
            self.done = true;
        } else if contains(data, b"\"usage\"") {
            if let Some(usage) = parse_usage(data) {
                self.usage = Some(usage);
            }
        }
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub(crate) fn done(&self) -> bool {
        self.done
    }

    pub(crate) fn events(&self) -> u64 {
        self.events
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        ": keep-alive comment\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\r\n\r\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn finds_usage_and_done_at_any_split() {
        let bytes = STREAM.as_bytes();
        for split in 0..bytes.len() {
            let mut s = SseScanner::default();
            s.feed(&bytes[..split]);
            s.feed(&bytes[split..]);
            assert!(s.done(), "split at {split}");
            assert_eq!(s.events(), 3);
            let u = s.usage().unwrap();
            assert_eq!(u.total_tokens, 3);
        }
        // One byte at a time.
        let mut s = SseScanner::default();
        for b in bytes {
            s.feed(std::slice::from_ref(b));
        }
        assert!(s.done());
        assert_eq!(s.usage().unwrap().prompt_tokens, 2);
    }

    #[test]
    fn incomplete_stream_has_no_done() {
        let mut s = SseScanner::default();
        s.feed(b"data: {\"choices\":[]}\n\ndata: [DO");
        assert!(!s.done());
        assert!(s.usage().is_none());
    }
}
