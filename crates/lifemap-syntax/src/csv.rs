//! CSV header lines and fields.

use std::borrow::Cow;

/// `field` as a CSV field: quoted, with its quotes doubled, when it holds a separator, a quote or
/// a line break (RFC 4180); as it is otherwise.
pub fn quote_field(field: &str) -> Cow<'_, str> {
    if field.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

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

    #[test]
    fn fields_are_quoted_only_when_they_must_be_and_split_back() {
        assert_eq!(quote_field("plain text"), "plain text");
        assert_eq!(quote_field("a,b"), "\"a,b\"");
        assert_eq!(quote_field(r#"say "hi""#), r#""say ""hi""""#);
        assert_eq!(quote_field("two\nlines"), "\"two\nlines\"");
        let fields = ["a,b", "say \"hi\"", "", "x"];
        let line: Vec<String> = fields.iter().map(|f| quote_field(f).into_owned()).collect();
        assert_eq!(split_header(&line.join(","), b',', b'"'), fields);
    }
}
