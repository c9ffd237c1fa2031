//! Splitting a byte stream into lines, chunk by chunk, for the `lines` source format.

/// Name of the one column of a `lines` source.
pub const LINE_COLUMN: &str = "line";

/// Splits chunks of a file into lines: `\n` ends a line and a `\r` before it is dropped; empty
/// lines are skipped but counted, so a line number is the one an editor shows. A line may span
/// any number of chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of a line whose end is in a later chunk.
    partial: Vec<u8>,
    lines_seen: u64,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many lines (empty ones included) have been handed out or skipped so far.
    pub fn lines_seen(&self) -> u64 {
        self.lines_seen
    }

    /// Call `on_line(line_number, line)` for every line the chunk completes.
    pub fn push<E>(&mut self, chunk: &[u8], mut on_line: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            self.partial.extend_from_slice(&rest[..end]);
            // Taken and put back so the buffer's allocation is reused for the next partial line.
            let line = std::mem::take(&mut self.partial);
            let handled = self.emit(&line, &mut on_line);
            self.partial = line;
            self.partial.clear();
            handled?;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            self.emit(&rest[start..end], &mut on_line)?;
            start = end + 1;
        }
        self.partial.extend_from_slice(&rest[start..]);
        Ok(())
    }

    /// The end of the file: the last line need not end in `\n`.
    pub fn finish<E>(&mut self, mut on_line: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.partial);
        self.emit(&line, &mut on_line)
    }

    fn emit<E>(&mut self, line: &[u8], on_line: &mut impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        self.lines_seen += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        on_line(self.lines_seen, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(u64, String)> {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        let mut collect = |number: u64, line: &[u8]| -> Result<(), ()> {
            lines.push((number, String::from_utf8_lossy(line).into_owned()));
            Ok(())
        };
        for chunk in chunks {
            splitter.push(chunk, &mut collect).expect("no error");
        }
        splitter.finish(&mut collect).expect("no error");
        lines
    }

    #[test]
    fn lines_span_chunks_and_keep_their_numbers() {
        let got = split(&[b"ab", b"c\r\n\nd", b"", b"e\nf"]);
        assert_eq!(
            got,
            [(1, "abc".to_string()), (3, "de".to_string()), (4, "f".to_string())]
        );
    }

    #[test]
    fn an_error_stops_the_split() {
        let mut splitter = LineSplitter::new();
        let result = splitter.push(b"a\nb\n", |number, _| if number == 2 { Err(number) } else { Ok(()) });
        assert_eq!(result, Err(2));
    }
}
