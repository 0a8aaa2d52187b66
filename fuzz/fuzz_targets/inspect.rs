//! Target (a): model decoding + `inspect` (text, JSON) + a self-diff.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};

fuzz_target!(|data: &[u8]| {
    postmerge_fuzz::run_inspect(data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    postmerge_fuzz::mutate(data, size, max_size, seed, |d, s, m| libfuzzer_sys::fuzzer_mutate(d, s, m))
});
