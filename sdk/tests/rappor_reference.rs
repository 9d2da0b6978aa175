//! Bit-exact interoperability with the RAPPOR reference client: for every row of
//! `tests/data/rappor/words-small/reports.csv` (CRLF, bit strings most significant
//! bit first), the encoder reproduces the `bloom` column from `true_values.csv`,
//! and the `prr` column with the client id as the client secret.

use ldp_sdk::mechanism::rappor::{RapporEncoder, RapporParams};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/rappor/words-small"
);

/// Packs an MSB-first bit string (character j is bit k-1-j) LSB first.
fn pack(bits: &str) -> Vec<u8> {
    let k = bits.len();
    let mut out = vec![0u8; k.div_ceil(8)];
    for (j, c) in bits.bytes().enumerate() {
        assert!(c == b'0' || c == b'1', "bad bit character {c}");
        let i = k - 1 - j;
        out[i / 8] |= (c - b'0') << (i % 8);
    }
    out
}

#[test]
fn encoder_reproduces_reference_bloom_and_prr_for_every_row() {
    let params = RapporParams::new(16, 2, 64, 0.5, 0.5, 0.75).unwrap();
    let reports = std::fs::read_to_string(format!("{DIR}/reports.csv")).unwrap();
    let values = std::fs::read_to_string(format!("{DIR}/true_values.csv")).unwrap();
    let mut rows = 0;
    for (report, value) in reports
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .zip(values.lines().skip(1))
    {
        let r: Vec<&str> = report.split(',').collect();
        let v: Vec<&str> = value.split(',').collect();
        assert_eq!(r[0], v[0], "rows out of step");
        let cohort: u32 = r[1].parse().unwrap();
        assert_eq!(v[1].parse::<u32>().unwrap(), cohort);
        let enc = RapporEncoder::reference(params.clone(), r[0].as_bytes(), cohort).unwrap();
        assert_eq!(
            enc.bloom(v[2].as_bytes()),
            pack(r[2]),
            "bloom of row {}",
            r[0]
        );
        assert_eq!(enc.prr(v[2].as_bytes()), pack(r[3]), "prr of row {}", r[0]);
        rows += 1;
    }
    assert_eq!(rows, 100_000);
}
