//! The row readers on arbitrary export files: see `lifemap_syntax::fuzzing::rows`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lifemap_syntax::fuzzing::rows(data));
