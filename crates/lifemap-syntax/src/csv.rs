//! CSV header lines.

/// Column names of a header line: split on the delimiter outside quotes, quotes removed, names
/// trimmed. `""` inside quotes is one quote.
pub fn split_header(line: &str, delimiter: u8, quote: u8) -> Vec<String> {
    let (delimiter, quote) = (delimiter as char, quote as char);
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == quote {
            if quoted && chars.peek() == Some(&quote) {
                current.push(quote);
                chars.next();
            } else {
                quoted = !quoted;
            }
        } else if c == delimiter && !quoted {
            names.push(std::mem::take(&mut current).trim().to_string());
        } else {
            current.push(c);
        }
    }
    names.push(current.trim().to_string());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_split_outside_quotes() {
        assert_eq!(
            split_header("a,\"b,c\",\"d\"\"e\", f ", b',', b'"'),
            ["a", "b,c", "d\"e", "f"]
        );
        assert_eq!(split_header("x;y", b';', b'"'), ["x", "y"]);
    }
}
