//! Where in a step's SQL an error is: the line and column in the rendered SQL (from the
//! parser's `Line: L, Column: C`, or the first place an unknown name appears), shown with the
//! rendered lines around it, and the line of the file the user wrote when that rendered line
//! appears there once (templating can move lines, so a line is only named when it is certain).

/// `message`'s place in `rendered`, as text to append to the error; `None` when it has none.
/// `file` is the SQL file's name, `None` for an inline query.
pub fn locate(rendered: &str, template: &str, file: Option<&str>, message: &str) -> Option<String> {
    let (line, column) = parser_position(message).or_else(|| unknown_name_position(rendered, message))?;
    let lines: Vec<&str> = rendered.lines().collect();
    let text = lines.get(line.checked_sub(1)?)?;
    let in_file = match (template_line(template, text), file) {
        (Some(found), Some(file)) => format!("{file}:{found}:{column}"),
        (Some(found), None) => format!("line {found}, column {column} of the inline query"),
        (None, Some(file)) => format!("{file} (rendered line {line}, column {column})"),
        (None, None) => format!("rendered line {line}, column {column} of the inline query"),
    };
    let mut out = format!("at {in_file}; the rendered SQL there:");
    let first = line.saturating_sub(2).max(1);
    let last = (line + 1).min(lines.len());
    let width = last.to_string().len();
    for number in first..=last {
        out.push_str(&format!("\n  {number:>width$} | {}", lines[number - 1]));
        if number == line {
            out.push_str(&format!(
                "\n  {:>width$} | {}^",
                "",
                " ".repeat(column.saturating_sub(1))
            ));
        }
    }
    Some(out)
}

/// `Line: 7, Column: 8` in sqlparser's messages.
fn parser_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// DataFusion names an unknown column or table without a place: find the name's first use.
fn unknown_name_position(rendered: &str, message: &str) -> Option<(usize, usize)> {
    let name = ["No field named ", "table '", "column '"].iter().find_map(|marker| {
        let rest = &message[message.find(marker)? + marker.len()..];
        let name: String = rest
            .trim_start_matches(['"', '\''])
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        Some(name)
    })?;
    let name = name
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .filter(|n| !n.is_empty())?
        .to_lowercase();
    for (index, line) in rendered.lines().enumerate() {
        let lower = line.to_lowercase();
        let mut from = 0;
        while let Some(found) = lower[from..].find(&name) {
            let start = from + found;
            let end = start + name.len();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary(lower[..start].chars().last()) && boundary(lower[end..].chars().next()) {
                return Some((index + 1, lower[..start].chars().count() + 1));
            }
            from = end;
        }
    }
    None
}

/// The one line of `template` that reads `text` (ignoring surrounding spaces), if exactly one does.
fn template_line(template: &str, text: &str) -> Option<usize> {
    let wanted = text.trim();
    if wanted.is_empty() {
        return None;
    }
    let mut found = template
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim() == wanted)
        .map(|(index, _)| index + 1);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "-- orders\n{% set amount %}\n  CAST(amount AS INT)\n{% endset %}\nSELECT order_id,\n  {{ amount }} AS n,\n  (1 + ) AS broken\nFROM orders\n";
    const RENDERED: &str =
        "-- orders\n\nSELECT order_id,\n  \n  CAST(amount AS INT)\n AS n,\n  (1 + ) AS broken\nFROM orders\n";

    #[test]
    fn a_parser_error_is_shown_at_its_line_of_the_file_and_of_the_rendered_sql() {
        let message = "SQL error: ParserError(\"Expected: an expression, found: ) at Line: 7, Column: 8\")";
        let located = locate(RENDERED, TEMPLATE, Some("sql/bad.sql"), message).expect("a place");
        assert_eq!(
            located,
            "at sql/bad.sql:7:8; the rendered SQL there:\n  5 |   CAST(amount AS INT)\n  6 |  AS n,\n  7 |   (1 + ) AS broken\n    |        ^\n  8 | FROM orders"
        );
    }

    #[test]
    fn an_unknown_column_is_found_where_it_is_first_used() {
        let rendered = "SELECT order_id,\n       amont\nFROM orders";
        let message = "Schema error: No field named amont. Did you mean 'orders.amount'?";
        let located = locate(rendered, rendered, None, message).expect("a place");
        assert!(
            located.starts_with("at line 2, column 8 of the inline query;"),
            "{located}"
        );
        // `amont` inside another word is not it.
        assert_eq!(
            unknown_name_position("SELECT amonts, amont FROM t", message),
            Some((1, 16))
        );
    }

    #[test]
    fn a_rendered_line_that_appears_twice_in_the_file_names_no_file_line() {
        let template = "SELECT 1\nUNION ALL\nSELECT 1\n(";
        let message = "ParserError(\"Expected: x at Line: 4, Column: 1\")";
        let located = locate(template, template, Some("q.sql"), message).expect("a place");
        assert!(located.starts_with("at q.sql:4:1;"), "{located}");
        let located = locate(
            "SELECT 1\nUNION ALL\nSELECT 1",
            template,
            Some("q.sql"),
            "at Line: 3, Column: 8",
        )
        .expect("place");
        assert!(located.starts_with("at q.sql (rendered line 3, column 8)"), "{located}");
    }
}
