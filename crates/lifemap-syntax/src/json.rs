//! Several string fields of a JSON object line, read in one pass (lifemap's `json_fields`).

use jiter::{Jiter, JiterResult, Peek};

/// The most paths one reader takes: one bit of a `u64` each.
pub const MAX_PATHS: usize = 64;

/// Reads the string values at a fixed set of paths (keys joined by dots) from JSON lines.
///
/// A value is `None` when its key is missing or is not a JSON string; the first of repeated keys
/// wins. Everything else in the line is skipped but still validated, so a line either is one JSON
/// object or [`FieldReader::read`] says it is not.
#[derive(Debug)]
pub struct FieldReader {
    paths: Vec<Vec<String>>,
    all: u64,
    /// The values of the last line, as byte ranges of `scratch` per path.
    scratch: String,
    ranges: Vec<Option<(usize, usize)>>,
}

impl FieldReader {
    /// A reader of `paths` (at most [`MAX_PATHS`]; paths past that are ignored).
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Self {
        let paths: Vec<Vec<String>> = paths
            .iter()
            .take(MAX_PATHS)
            .map(|path| path.as_ref().split('.').map(str::to_string).collect())
            .collect();
        let all = match paths.len() {
            0 => 0,
            n => u64::MAX >> (MAX_PATHS - n),
        };
        Self {
            ranges: vec![None; paths.len()],
            paths,
            all,
            scratch: String::with_capacity(256),
        }
    }

    /// Read one line; true when it is exactly one JSON object (then [`Self::get`] has its values).
    pub fn read(&mut self, line: &str) -> bool {
        self.scratch.clear();
        self.ranges.iter_mut().for_each(|range| *range = None);
        let mut jiter = Jiter::new(line.as_bytes());
        let Self {
            paths,
            all,
            scratch,
            ranges,
        } = self;
        let parsed = matches!(jiter.peek(), Ok(Peek::Object))
            && read_object(&mut jiter, paths, *all, 0, scratch, ranges).is_ok()
            && jiter.finish().is_ok();
        if !parsed {
            ranges.iter_mut().for_each(|range| *range = None);
        }
        parsed
    }

    /// The string value of path `index` in the last line read.
    pub fn get(&self, index: usize) -> Option<&str> {
        let (start, end) = (*self.ranges.get(index)?)?;
        self.scratch.get(start..end)
    }
}

/// Read the object the parser is at, keeping the string values of the `wanted` paths (a bit
/// per path) whose first `depth` keys led here, and skipping (but still validating) the rest.
fn read_object(
    jiter: &mut Jiter,
    paths: &[Vec<String>],
    wanted: u64,
    depth: usize,
    scratch: &mut String,
    ranges: &mut [Option<(usize, usize)>],
) -> JiterResult<()> {
    let mut first = true;
    loop {
        let key = if first { jiter.next_object()? } else { jiter.next_key()? };
        first = false;
        let Some(name) = key else { return Ok(()) };
        let here = bits(wanted)
            .filter(|&p| paths[p][depth] == name)
            .fold(0u64, |mask, p| mask | 1 << p);
        let peek = jiter.peek()?;
        let leaves = bits(here)
            .filter(|&p| paths[p].len() == depth + 1)
            .fold(0u64, |mask, p| mask | 1 << p);
        let deeper = here & !leaves;
        if peek == Peek::String && leaves != 0 {
            let value = jiter.known_str()?;
            let start = scratch.len();
            scratch.push_str(value);
            for p in bits(leaves) {
                ranges[p].get_or_insert((start, scratch.len()));
            }
        } else if peek == Peek::Object && deeper != 0 {
            read_object(jiter, paths, deeper, depth + 1, scratch, ranges)?;
        } else {
            jiter.known_skip(peek)?;
        }
    }
}

/// The indexes of the set bits of `mask`.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let bit = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            bit
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str], paths: &[&str]) -> Vec<Option<Vec<Option<String>>>> {
        let mut reader = FieldReader::new(paths);
        lines
            .iter()
            .map(|line| {
                reader
                    .read(line)
                    .then(|| (0..paths.len()).map(|p| reader.get(p).map(str::to_string)).collect())
            })
            .collect()
    }

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn reads_top_level_and_nested_strings_in_one_pass() {
        let line = r#"{"b":"x","a":"y","p":{"c":"cat","n":1},"q":[1,{"a":"no"}],"e":"esc\"aped\u00e9"}"#;
        let got = run(&[line], &["a", "b", "p.c", "p.n", "missing", "e", "p"]);
        assert_eq!(
            got,
            vec![Some(vec![s("y"), s("x"), s("cat"), None, None, s("esc\"apedé"), None])]
        );
    }

    #[test]
    fn non_strings_are_null_and_the_first_repeated_key_wins() {
        let got = run(
            &[r#"{"a":1,"b":null,"c":true,"d":"first","d":"second"}"#],
            &["a", "b", "c", "d"],
        );
        assert_eq!(got, vec![Some(vec![None, None, None, s("first")])]);
    }

    #[test]
    fn malformed_lines_and_non_objects_are_not_read() {
        let lines = [
            r#"{"a":"x""#,
            r#"{"a":"x"} trailing"#,
            r#"["a"]"#,
            "not json",
            "",
            r#""a""#,
        ];
        assert_eq!(run(&lines, &["a"]), vec![None; lines.len()]);
    }

    #[test]
    fn sixty_four_paths_fit_and_more_are_ignored() {
        let paths: Vec<String> = (0..70).map(|i| format!("k{i}")).collect();
        let mut reader = FieldReader::new(&paths);
        assert!(reader.read(r#"{"k63":"last","k64":"beyond"}"#));
        assert_eq!(reader.get(63), Some("last"));
        assert_eq!(reader.get(64), None);
    }
}
