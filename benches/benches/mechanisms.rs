//! Criterion benchmarks of the SDK's randomizers and estimators.
//!
//! - `encode/<mechanism>/<d>`: one report at eps = 1, d in {64, 1024, 65536};
//!   `encode/<numeric mechanism>`: one numeric report on [0, 100].
//! - `estimate/<mechanism>/<d>`: estimates from statistics aggregated once, outside
//!   the timed loop, from n = 10^6 reports (the cost does not depend on n; for
//!   SUE/OUE at d = 65536 the statistics hold 10^4 reports to keep setup short).
//!
//! Targets on the 2-core reference machine: GRR, OLH, Hadamard and numeric encode
//! <= 100 ns; SUE/OUE at d = 1024 <= 1 us; estimation at d = 1024 <= 50 ms.
//!
//! - `calibrate/chacha12_128_u64`: the randomness alone (1 KiB of ChaCha12), to
//!   read the other numbers against the machine's load.
//!
//! Run: `cargo bench -p ldp-benches --bench mechanisms`.

use std::cell::OnceCell;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ldp_sdk::estimate::Stats;
use ldp_sdk::mechanism::{Mechanism, MechanismSpec};
use ldp_sdk::{Epsilon, LdpRng};

const DOMAINS: [u32; 3] = [64, 1024, 65536];

fn categorical(d: u32) -> Vec<(&'static str, MechanismSpec)> {
    vec![
        ("grr", MechanismSpec::Grr { domain_size: d }),
        ("sue", MechanismSpec::Sue { domain_size: d }),
        ("oue", MechanismSpec::Oue { domain_size: d }),
        (
            "olh",
            MechanismSpec::Olh {
                domain_size: d,
                buckets: 0,
                seed_count: 0,
            },
        ),
        ("hadamard", MechanismSpec::Hadamard { domain_size: d }),
    ]
}

fn numeric() -> Vec<(&'static str, MechanismSpec)> {
    let (lo, hi) = (0.0, 100.0);
    vec![
        (
            "laplace",
            MechanismSpec::Laplace {
                lo,
                hi,
                granularity_log2: 0,
            },
        ),
        ("duchi", MechanismSpec::Duchi { lo, hi }),
        ("piecewise", MechanismSpec::Piecewise { lo, hi }),
        ("hybrid", MechanismSpec::Hybrid { lo, hi }),
    ]
}

fn mechanism(spec: MechanismSpec) -> Mechanism {
    Mechanism::new(spec, Epsilon::new(1.0).expect("valid epsilon")).expect("valid spec")
}

fn encode(c: &mut Criterion) {
    let mut rng = LdpRng::seeded_for_simulation(1);
    let mut group = c.benchmark_group("encode");
    for d in DOMAINS {
        for (name, spec) in categorical(d) {
            let m = mechanism(spec);
            let v = d / 3;
            group.bench_function(format!("{name}/{d}"), |b| {
                b.iter(|| m.encode_index(black_box(v), &mut rng))
            });
        }
    }
    for (name, spec) in numeric() {
        let m = mechanism(spec);
        group.bench_function(name, |b| {
            b.iter(|| m.encode_value(black_box(37.3), &mut rng))
        });
    }
    group.finish();
}

/// Statistics of `n` reports of a skewed population.
fn aggregated(m: &Mechanism, d: u32, n: u32, rng: &mut LdpRng) -> Stats {
    let mut stats = m.new_stats();
    for i in 0..n {
        let v = ((u64::from(i) * u64::from(i) / u64::from(n)) % u64::from(d)) as u32;
        let r = m.encode_index(v, rng).expect("in domain");
        m.accumulate(&mut stats, &r).expect("valid report");
    }
    stats
}

fn estimate(c: &mut Criterion) {
    let mut rng = LdpRng::seeded_for_simulation(2);
    let mut group = c.benchmark_group("estimate");
    group.sample_size(10);
    for d in [1024, 65536] {
        for (name, spec) in categorical(d) {
            let m = mechanism(spec);
            let n = if d > 1024 && matches!(m, Mechanism::Unary(_)) {
                10_000
            } else {
                1_000_000
            };
            // Built lazily, once: only if the benchmark is selected, and not
            // again for each sample (criterion calls the closure per sample).
            let stats = OnceCell::new();
            group.bench_function(format!("{name}/{d}"), |b| {
                let stats = stats.get_or_init(|| aggregated(&m, d, n, &mut rng));
                b.iter(|| m.estimate_frequencies(black_box(stats)))
            });
        }
    }
    for (name, spec) in numeric() {
        let m = mechanism(spec);
        let stats = OnceCell::new();
        group.bench_function(name, |b| {
            let stats = stats.get_or_init(|| {
                let mut stats = m.new_stats();
                for i in 0..1_000_000u32 {
                    let r = m
                        .encode_value(f64::from(i % 101), &mut rng)
                        .expect("in range");
                    m.accumulate(&mut stats, &r).expect("valid report");
                }
                stats
            });
            b.iter(|| m.estimate_mean(black_box(stats)))
        });
    }
    group.finish();
}

/// The cost of the randomness alone, to read the other numbers against the
/// machine's current load: 1 KiB of ChaCha12 output as 128 `next_u64` calls
/// (about what one OUE report at d = 1024 consumes).
fn calibrate(c: &mut Criterion) {
    use rand::Rng;
    let mut rng = LdpRng::seeded_for_simulation(3);
    c.bench_function("calibrate/chacha12_128_u64", |b| {
        b.iter(|| (0..128).fold(0u64, |acc, _| acc ^ rng.next_u64()))
    });
}

criterion_group!(benches, calibrate, encode, estimate);
criterion_main!(benches);
