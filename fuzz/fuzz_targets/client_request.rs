//! A client's request body through the JSON-RPC decoder (`manifold::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifold::fuzzing::client_request(data));
