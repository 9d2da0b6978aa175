//! Criterion benchmarks of RAPPOR, on the parameters of the shared words-small
//! case (k = 16 bits, h = 2, m = 64 cohorts, f = 0.5, p = 0.5, q = 0.75).
//!
//! - `rappor/encode`: one report of a device (Bloom filter, memoized PRR from
//!   HMAC, fresh IRR), as `RapporEncoder::encode` runs on the device.
//! - `rappor/decode_words_small`: `ldp rappor decode` on the reference
//!   words-small counts (100,000 reports) against its 300 candidates: hashing
//!   the candidates, selection, fit and test. The reference R decoder takes
//!   about 3.1 s on the same files (tests/data/rappor/words-small/README.md).
//!
//! Run: `cargo bench -p ldp-benches --bench rappor`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use ldp_aggregator::rappor::decode::{DecodeOptions, decode};
use ldp_aggregator::rappor::reference;
use ldp_sdk::LdpRng;
use ldp_sdk::mechanism::rappor::{DeviceSecret, RapporEncoder};

fn words_small() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rappor/words-small")
}

fn bench(c: &mut Criterion) {
    let dir = words_small();
    let params = reference::read_params(&dir.join("params.csv")).expect("params.csv");
    let mut rng = LdpRng::seeded_for_simulation(1);
    let secret = DeviceSecret::generate(&mut rng);
    let encoder = RapporEncoder::new(params.clone(), &secret, "app.words");
    c.bench_function("rappor/encode", |b| {
        b.iter(|| encoder.encode(black_box(b"national"), &mut rng))
    });

    let counts = reference::read_counts(&dir.join("counts.csv"), params).expect("counts.csv");
    let candidates = reference::read_candidates(&dir.join("candidates.txt")).expect("candidates");
    let options = DecodeOptions::default();
    c.bench_function("rappor/decode_words_small", |b| {
        b.iter(|| decode(black_box(&counts), &candidates, &options).expect("decodes"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
