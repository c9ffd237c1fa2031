//! The documentation's code blocks, so the docs cannot drift from the code: every pipeline (or
//! part of one) parses as a pipeline, where unknown keys are errors; every `lifemap` command parses
//! with the binary's own flags; and the README's tour pipeline validates and runs as shown.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::common::{Project, first_column, run_expecting};

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repository().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repository().join("docs"))
        .expect("docs/")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// A fenced code block: its language, where it starts, and its text.
struct Block {
    language: String,
    place: String,
    text: String,
}

fn blocks(page: &Path) -> Vec<Block> {
    let content = std::fs::read_to_string(page).expect("read page");
    let name = page.strip_prefix(repository()).unwrap_or(page).display().to_string();
    let mut found = Vec::new();
    let mut open: Option<(String, usize, Vec<&str>)> = None;
    for (number, line) in content.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.trim().to_string(), number + 1, Vec::new())),
            (Some(_), Some(_)) => {
                if let Some((language, start, lines)) = open.take() {
                    found.push(Block {
                        language,
                        place: format!("{name}:{start}"),
                        text: lines.join("\n"),
                    });
                }
            }
            (Some((_, _, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    found
}

fn all_blocks(language: &str) -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|page| blocks(page))
        .filter(|block| block.language == language)
        .collect()
}

/// The top-level keys of a YAML document.
fn top_level_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with([' ', '#', '-']) && !line.trim().is_empty())
        .filter_map(|line| line.split_once(':').map(|(key, _)| key.trim().to_string()))
        .collect()
}

const PIPELINE_KEYS: [&str; 13] = [
    "name",
    "description",
    "timezone",
    "vars",
    "sql_dir",
    "storage",
    "engine",
    "sources",
    "steps",
    "checks",
    "output",
    "marts",
    "report",
];

#[test]
fn every_pipeline_in_the_docs_parses_with_no_unknown_key() {
    let mut checked = 0;
    for block in all_blocks("yaml") {
        let keys = top_level_keys(&block.text);
        if keys.is_empty() || !keys.iter().all(|key| PIPELINE_KEYS.contains(&key.as_str())) {
            continue; // not a pipeline: e.g. a compose file
        }
        // A part of a pipeline gets the keys every pipeline must have.
        let mut text = block.text.clone();
        for (key, filler) in [
            ("name", "name: from_the_docs"),
            ("sources", "sources: {}"),
            ("output", "output: { location: out }"),
        ] {
            if !keys.iter().any(|k| k == key) {
                text = format!("{filler}\n{text}");
            }
        }
        if let Err(err) = lifemap_syntax::pipeline::parse(&text) {
            panic!("{}: {err:?}\n{text}", block.place);
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} pipelines found in the docs");
}

/// A shell line's words, with quotes removed (enough for the docs' commands).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The arguments of a `lifemap` command in a shell line (`lifemap ...` or `cargo run ... -- ...`).
fn lifemap_arguments(line: &str) -> Option<Vec<String>> {
    let words = words(line);
    let start = match words.iter().position(|w| w == "lifemap") {
        Some(at) => at + 1,
        None if words.first().is_some_and(|w| w == "cargo") && words.get(1).is_some_and(|w| w == "run") => {
            // `cargo run --example ...` runs another program.
            if words.iter().any(|w| w == "--example") {
                return None;
            }
            words.iter().position(|w| w == "--")? + 1
        }
        None => return None,
    };
    Some(words[start..].to_vec())
}

#[test]
fn every_lifemap_command_in_the_docs_parses_with_the_binarys_flags() {
    let mut checked = 0;
    for block in all_blocks("sh") {
        // Continuation lines are one command.
        let joined = block.text.replace("\\\n", " ");
        for line in joined.lines() {
            let Some(arguments) = lifemap_arguments(line) else {
                continue;
            };
            let argv = std::iter::once("lifemap".to_string()).chain(arguments);
            if let Err(err) = lifemap::cli::Cli::try_parse_from(argv) {
                panic!("{}: `{}` does not parse:\n{err}", block.place, line.trim());
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} commands found in the docs");
}

/// The README's tour: its pipeline, saved where it says, validates and runs with its commands.
#[test]
fn the_readme_tour_pipeline_validates_and_runs() {
    let readme = blocks(&repository().join("README.md"));
    let tour = readme
        .iter()
        .find(|block| block.language == "yaml" && block.text.starts_with("name: revenue_by_category"))
        .expect("the tour's pipeline");
    let project = Project::new();
    project.write("pipelines/tour.yaml", &tour.text);
    let orders = repository().join("data/sample/orders/orders.csv.gz");
    project.write(
        "data/sample/orders/orders.csv.gz",
        std::fs::read(orders).expect("sample orders"),
    );
    let commands = readme
        .iter()
        .filter(|block| block.language == "sh")
        .flat_map(|block| block.text.lines().filter_map(lifemap_arguments).collect::<Vec<_>>())
        .filter(|arguments| arguments.get(1).is_some_and(|a| a == "pipelines/tour.yaml"))
        .collect::<Vec<_>>();
    assert_eq!(commands.len(), 3, "validate, plan and run");
    for arguments in commands {
        let mut command = project.lifemap();
        command.args(&arguments);
        run_expecting(command, 0);
    }
    let categories = first_column(
        &project.path("output/tour/revenue_by_category/ds=2026-10-31/"),
        "SELECT string_agg(category, ',' ORDER BY category) FROM t",
    );
    assert_eq!(categories, ["beauty,eco_friendly,electronics,fashion,home,sports"]);
}
