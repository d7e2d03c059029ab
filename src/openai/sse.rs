//! Server-sent events, as OpenAI streams use them: formatting our chunks
//! (`data: {json}\n\n`, `data: [DONE]\n\n`) and an incremental, pure parser
//! for an upstream stream. No I/O here: callers feed bytes as they arrive.

use super::error::ApiError;
use super::response::ChatCompletionChunk;

/// The stream terminator's payload.
pub const DONE: &str = "[DONE]";

/// The stream terminator, ready to write.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// `data: {json}\n\n` for one payload (a payload with newlines is split over
/// several `data:` lines, as SSE requires).
pub fn sse_data(payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + 8);
    for line in payload.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// One chunk as an SSE event.
pub fn sse_chunk(chunk: &ChatCompletionChunk) -> String {
    sse_data(&serde_json::to_string(chunk).expect("chunk serialises"))
}

/// An error in the middle of a stream, in OpenAI's error shape.
pub fn sse_error(err: &ApiError) -> String {
    sse_data(&err.to_json())
}

/// Incremental SSE parser: feed bytes with [`SseParser::push`], get the
/// `data` payload of every completed event. Tolerates comments (`:`),
/// `event:`/`id:`/`retry:` lines, LF, CRLF or CR line ends, and lines or
/// UTF-8 characters split across reads.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, incomplete line.
    line: Vec<u8>,
    /// The last byte seen was a CR: a following LF belongs to it.
    after_cr: bool,
    /// Data lines of the current event, joined by `\n`.
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds bytes; returns the payloads of events completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// End of stream: an event that was not closed by a blank line is still
    /// delivered (lenient towards servers that end without one).
    pub fn finish(&mut self) -> Option<String> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.after_cr = false;
        self.end_line(&mut out);
        out.pop()
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        if self.line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        // event, id, retry and unknown fields: ignored.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::response::Delta;

    fn feed_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut start = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            out.extend(p.push(&input[start..c]));
            start = c;
        }
        out.extend(p.finish());
        out
    }

    const STREAM: &str = ": keep-alive\r\n\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\nid: 7\ndata: {\"b\":\"é日\"}\n\ndata:first\ndata: second\n\nretry: 100\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<String> {
        vec![
            "{\"a\":1}".into(),
            "{\"b\":\"é日\"}".into(),
            "first\nsecond".into(),
            DONE.into(),
        ]
    }

    #[test]
    fn parses_whole_stream() {
        assert_eq!(feed_in_pieces(STREAM.as_bytes(), &[]), expected());
    }

    #[test]
    fn any_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            assert_eq!(feed_in_pieces(bytes, &[i]), expected(), "cut at {i}");
        }
        // Byte by byte, including inside CRLF and inside multi-byte characters.
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(feed_in_pieces(bytes, &cuts), expected());
        // Two cuts everywhere (coarse step to keep it quick).
        for i in (0..bytes.len()).step_by(3) {
            for j in (i..bytes.len()).step_by(5) {
                assert_eq!(feed_in_pieces(bytes, &[i, j]), expected(), "cuts {i},{j}");
            }
        }
    }

    #[test]
    fn cr_only_line_ends_and_unterminated_tail() {
        assert_eq!(
            feed_in_pieces(b"data: x\r\rdata: y\r\r", &[]),
            vec!["x", "y"]
        );
        // CR at the end of one read, LF at the start of the next: one line end.
        assert_eq!(feed_in_pieces(b"data: x\r\n\r\n", &[8, 9]), vec!["x"]);
        assert_eq!(feed_in_pieces(b"data: tail", &[]), vec!["tail"]);
        assert_eq!(feed_in_pieces(b"data: tail\n", &[]), vec!["tail"]);
        assert!(feed_in_pieces(b": only a comment\n\n", &[]).is_empty());
        assert_eq!(feed_in_pieces(b"data\n\n", &[]), vec![""]);
    }

    #[test]
    fn formatting_round_trips_through_the_parser() {
        let chunk = ChatCompletionChunk::new("c", "m", 1, Delta::content("a\nb"), None);
        let text = sse_chunk(&chunk);
        assert!(text.starts_with("data: {") && text.ends_with("}\n\n"));
        let mut p = SseParser::new();
        let mut got = p.push(text.as_bytes());
        got.extend(p.push(SSE_DONE.as_bytes()));
        assert_eq!(got.len(), 2);
        let back: ChatCompletionChunk = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(back, chunk);
        assert_eq!(got[1], DONE);
        assert_eq!(sse_data("x\ny"), "data: x\ndata: y\n\n");
        let e = sse_error(&ApiError::new(crate::openai::ErrorCode::NoRoute, "none"));
        assert!(e.contains("\"code\":\"no_route\""));
    }
}
