//! Target (b): merge (two layouts), set, and resize to 128x160 / 96x96 (then merge) on mutated
//! real models.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target};

fuzz_target!(|data: &[u8]| {
    postmerge_fuzz::run_passes(data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    postmerge_fuzz::mutate(data, size, max_size, seed, |d, s, m| libfuzzer_sys::fuzzer_mutate(d, s, m))
});
