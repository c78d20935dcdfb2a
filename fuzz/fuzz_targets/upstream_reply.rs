//! An upstream's answer through the body reader and the reply reader (`manifold::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifold::fuzzing::upstream_reply(data));
