//! What the fuzz targets in `fuzz/` run. Kept in the crate so that an input a fuzzer once crashed
//! on replays as an ordinary test (`tests/fuzz_regressions.rs`) without nightly or libFuzzer.
//!
//! Each function must return for any input; a panic is a finding. Besides "no panic", they check
//! a few properties that a simpler reading of the same input can confirm.

use serde_yaml::Value;

use crate::csv::split_header;
use crate::interpolate::interpolate;
use crate::json::FieldReader;
use crate::lines::LineSplitter;
use crate::pipeline;
use crate::suggest::did_you_mean;
use crate::timestamp::parse_rfc3339_nanos;
use crate::units::{parse_bytes, parse_duration};

/// The pipeline loader's text handling: the YAML into typed settings (with error locations),
/// then what compiling does to setting values (placeholders, durations, sizes, suggestions),
/// applied to every scalar of the document.
pub fn pipeline_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = pipeline::parse(text) {
        assert!(!err.message.is_empty(), "an error without a message for {text:?}");
    }
    if !text.contains('\n') {
        // One line: also a setting's value as it is, so the fuzzer needs no YAML around it.
        setting_value(text);
    }
    if let Ok(document) = serde_yaml::from_str::<Value>(text) {
        for_each_scalar(&document, &mut |scalar| setting_value(scalar));
    }
}

fn for_each_scalar(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Number(number) => visit(&number.to_string()),
        Value::Sequence(items) => items.iter().for_each(|item| for_each_scalar(item, visit)),
        Value::Mapping(map) => map.iter().for_each(|(key, item)| {
            for_each_scalar(key, visit);
            for_each_scalar(item, visit);
        }),
        Value::Tagged(tagged) => for_each_scalar(&tagged.value, visit),
        Value::Null | Value::Bool(_) => {}
    }
}

fn setting_value(text: &str) {
    let lookup = |name: &str| name.len().is_multiple_of(2).then(|| name.to_lowercase());
    match interpolate(text, &lookup) {
        Ok(filled) if !text.contains('$') => {
            assert_eq!(filled.value, text, "text without `$` changed by interpolation");
            assert!(!filled.from_env);
        }
        Ok(_) => {}
        Err(err) => assert!(text.contains('$'), "{text:?} failed without a placeholder: {err:?}"),
    }
    let _ = parse_duration(text);
    let _ = parse_bytes(text);
    let _ = did_you_mean(text, ["sources", "steps", "marts", "checks", "report"]);
}

/// The row-level readers on one export file: the first byte picks the chunk size the file is
/// read in, the rest is the file. Each line then goes through the NDJSON field reader, the RFC
/// 3339 parser and the CSV header splitter.
pub fn rows(data: &[u8]) {
    let Some((&chunk_size, file)) = data.split_first() else {
        return;
    };
    let mut splitter = LineSplitter::new();
    let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut collect = |number: u64, line: &[u8]| -> Result<(), ()> {
        lines.push((number, line.to_vec()));
        Ok(())
    };
    for chunk in file.chunks(usize::from(chunk_size).max(1)) {
        let _ = splitter.push(chunk, &mut collect);
    }
    let _ = splitter.finish(&mut collect);

    // The same split, done on the whole file at once.
    let expected: Vec<(u64, Vec<u8>)> = file
        .split(|&byte| byte == b'\n')
        .zip(1u64..)
        .map(|(line, number)| (number, line.strip_suffix(b"\r").unwrap_or(line).to_vec()))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    assert_eq!(lines, expected, "chunked split differs from the whole-file split");

    let mut reader = FieldReader::new(&["event_id", "person_id", "properties.category", "a.b.c", "ts"]);
    for (_, line) in &lines {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if reader.read(line) {
            assert!(line.trim_start().starts_with('{'), "{line:?} read as an object");
        }
        let _ = parse_rfc3339_nanos(line);
        let names = split_header(line, b',', b'"');
        if !line.contains('"') {
            let plain: Vec<&str> = line.split(',').map(str::trim).collect();
            assert_eq!(names, plain, "header {line:?} without quotes split differently");
        }
    }
}
