//! The pipeline loader on arbitrary files: see `lifemap_syntax::fuzzing::pipeline_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lifemap_syntax::fuzzing::pipeline_file(data));
