//! The file formats of the RAPPOR reference implementation (google/rappor), as
//! described in `tests/data/rappor/README.md`.
//!
//! - `params.csv`: header `k,h,m,p,q,f` (any column order), one data row.
//! - `reports.csv`: header `client,cohort,bloom,prr,irr`; bit strings of exactly
//!   k characters, **most significant bit first** (character j is bit k-1-j).
//!   Only `cohort` and `irr` are what a real client sends. Converted to
//!   [`Report::Rappor`] with bits packed **least significant bit first**.
//! - `counts.csv`: no header, m rows `N_c, Y_{c,0}, ..., Y_{c,k-1}` (bit 0 first).
//! - `map.csv`: no header, per candidate the string then m h 1-based row indices
//!   `c k + bit + 1`, for cohort c then hash i.
//! - `candidates.txt`: one string per line.
//!
//! The Python tools write CRLF line endings and this module writes them too;
//! when reading, LF and CRLF are both accepted (a `\r` before `\n` is removed,
//! never any other character). Anything else that does not fit is a
//! [`RapporError::Parse`] with the file and line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use ldp_sdk::mechanism::Report;
use ldp_sdk::mechanism::rappor::RapporParams;

use super::RapporError;
use super::counts::CohortCounts;
use super::decode::CandidateMap;

/// Reads a reference `params.csv`.
pub fn read_params(path: &Path) -> Result<RapporParams, RapporError> {
    let lines = read_lines(path)?;
    let file = path.display().to_string();
    let mut rows = lines.iter().filter(|(_, l)| !l.is_empty());
    let (Some((_, header)), Some((line, values))) = (rows.next(), rows.next()) else {
        return Err(parse(&file, 0, "expected a header and one data row".into()));
    };
    if let Some((extra, _)) = rows.next() {
        return Err(parse(&file, *extra, "more than one data row".into()));
    }
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let values: Vec<&str> = values.split(',').map(str::trim).collect();
    if names.len() != values.len() {
        return Err(parse(
            &file,
            *line,
            format!("{} values for {} columns", values.len(), names.len()),
        ));
    }
    let get = |name: &str| -> Result<f64, RapporError> {
        let i = names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| parse(&file, 1, format!("missing column {name}")))?;
        values[i]
            .parse::<f64>()
            .map_err(|e| parse(&file, *line, format!("{name} = {:?}: {e}", values[i])))
    };
    let int = |name: &str| -> Result<u32, RapporError> {
        let v = get(name)?;
        if v.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&v) {
            return Err(parse(&file, *line, format!("{name} = {v} is not a count")));
        }
        Ok(v as u32)
    };
    Ok(RapporParams::new(
        int("k")?,
        int("h")?,
        int("m")?,
        get("f")?,
        get("p")?,
        get("q")?,
    )?)
}

/// Writes a reference `params.csv` (LF, as the reference files).
pub fn write_params(path: &Path, params: &RapporParams) -> Result<(), RapporError> {
    let text = format!(
        "k,h,m,p,q,f\n{},{},{},{},{},{}\n",
        params.num_bits(),
        params.num_hashes(),
        params.num_cohorts(),
        params.p(),
        params.q(),
        params.f()
    );
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// Reads a reference `counts.csv` and checks it against `params`.
pub fn read_counts(path: &Path, params: RapporParams) -> Result<CohortCounts, RapporError> {
    let file = path.display().to_string();
    let mut rows = Vec::new();
    for (line, text) in read_lines(path)? {
        if text.is_empty() {
            continue;
        }
        let row = text
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| parse(&file, line, format!("{v:?}: {e}")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        rows.push(row);
    }
    CohortCounts::from_rows(params, &rows)
}

/// Writes `counts` as a reference `counts.csv` (CRLF).
pub fn write_counts(path: &Path, counts: &CohortCounts) -> Result<(), RapporError> {
    let mut out = String::new();
    for row in counts.rows() {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    std::fs::write(path, out).map_err(|e| io(path, e))
}

/// Reads `candidates.txt`: one string per line; empty lines are skipped.
pub fn read_candidates(path: &Path) -> Result<Vec<String>, RapporError> {
    Ok(read_lines(path)?
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Reads a reference `map.csv` into a [`CandidateMap`]: checks every row index
/// against its cohort block and the row length against `m h`.
pub fn read_map(path: &Path, params: &RapporParams) -> Result<CandidateMap, RapporError> {
    let file = path.display().to_string();
    let (m, h, k) = (
        params.num_cohorts() as usize,
        params.num_hashes() as usize,
        u64::from(params.num_bits()),
    );
    let (mut candidates, mut positions) = (Vec::new(), Vec::new());
    for (line, text) in read_lines(path)? {
        if text.is_empty() {
            continue;
        }
        let mut cells = text.split(',');
        let name = cells.next().unwrap_or_default().to_string();
        let indices = cells
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| parse(&file, line, format!("{v:?}: {e}")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        if indices.len() != m * h {
            return Err(RapporError::MapMismatch(format!(
                "{file}:{line}: {} indices, {m} cohorts x {h} hashes need {}",
                indices.len(),
                m * h
            )));
        }
        let mut per_cohort = Vec::with_capacity(m);
        for (c, chunk) in indices.chunks(h).enumerate() {
            let base = c as u64 * k;
            let bits = chunk
                .iter()
                .map(|&r| {
                    r.checked_sub(base + 1)
                        .filter(|&b| b < k)
                        .map(|b| b as u32)
                        .ok_or_else(|| {
                            RapporError::MapMismatch(format!(
                                "{file}:{line}: row {r} is not in cohort {c}'s rows {}..={}",
                                base + 1,
                                base + k
                            ))
                        })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            per_cohort.push(bits);
        }
        candidates.push(name);
        positions.push(per_cohort);
    }
    CandidateMap::from_positions(params, candidates, positions)
}

/// Writes the reference `map.csv` of `candidates` (CRLF), hashed by the SDK.
pub fn write_map(
    path: &Path,
    params: &RapporParams,
    candidates: &[String],
) -> Result<(), RapporError> {
    let k = params.num_bits();
    let mut out = String::new();
    for s in candidates {
        out.push_str(s);
        for c in 0..params.num_cohorts() {
            for bit in params.bloom_positions(s.as_bytes(), c) {
                out.push_str(&format!(",{}", c * k + bit + 1));
            }
        }
        out.push_str("\r\n");
    }
    std::fs::write(path, out).map_err(|e| io(path, e))
}

/// One row of a reference `reports.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceReport {
    /// The client id (in the reference simulation also the PRR secret).
    pub client: String,
    /// The true Bloom filter (simulations only), packed LSB first.
    pub bloom: Vec<u8>,
    /// The PRR (simulations only), packed LSB first.
    pub prr: Vec<u8>,
    /// What a client sends: the cohort and the IRR bits packed LSB first.
    pub report: Report,
}

/// Parses a bit string of exactly `num_bits` characters `0`/`1`, most
/// significant bit first, into bytes packed least significant bit first.
pub fn parse_bit_string(text: &str, num_bits: u32) -> Result<Vec<u8>, RapporError> {
    let k = num_bits as usize;
    if text.len() != k {
        return Err(RapporError::BitLength(format!(
            "{text:?} has {} characters, num_bits is {k}",
            text.len()
        )));
    }
    let mut out = vec![0u8; k.div_ceil(8)];
    for (j, ch) in text.bytes().enumerate() {
        let bit = match ch {
            b'0' => 0,
            b'1' => 1,
            other => {
                return Err(RapporError::BitLength(format!(
                    "{text:?}: character {:?} is not 0 or 1",
                    other as char
                )));
            }
        };
        let i = k - 1 - j;
        out[i / 8] |= bit << (i % 8);
    }
    Ok(out)
}

/// Formats packed (LSB first) bits as the reference's MSB-first bit string;
/// missing bytes count as zeros (an empty slice gives all zeros).
pub fn format_bit_string(bits: &[u8], num_bits: u32) -> String {
    (0..num_bits as usize)
        .rev()
        .map(|i| {
            let byte = bits.get(i / 8).copied().unwrap_or(0);
            if (byte >> (i % 8)) & 1 == 1 { '1' } else { '0' }
        })
        .collect()
}

/// Reads a reference `reports.csv` and converts every row into a validated
/// [`Report::Rappor`] (the ingest path for reference data).
pub fn read_reports(
    path: &Path,
    params: &RapporParams,
) -> Result<Vec<ReferenceReport>, RapporError> {
    let file = path.display().to_string();
    let lines = read_lines(path)?;
    let mut rows = lines.into_iter().filter(|(_, l)| !l.is_empty());
    match rows.next() {
        Some((_, header)) if header == "client,cohort,bloom,prr,irr" => {}
        Some((line, header)) => {
            return Err(parse(
                &file,
                line,
                format!("header {header:?}, expected client,cohort,bloom,prr,irr"),
            ));
        }
        None => return Err(parse(&file, 0, "empty file".into())),
    }
    rows.map(|(line, text)| {
        parse_report_row(&text, params).map_err(|e| match e {
            RapporError::Parse { reason, .. } => parse(&file, line, reason),
            other => parse(&file, line, other.to_string()),
        })
    })
    .collect()
}

/// Parses one data row `client,cohort,bloom,prr,irr` of `reports.csv`.
pub fn parse_report_row(text: &str, params: &RapporParams) -> Result<ReferenceReport, RapporError> {
    let cells: Vec<&str> = text.split(',').collect();
    let [client, cohort, bloom, prr, irr] = cells[..] else {
        return Err(parse("", 0, format!("{} columns, expected 5", cells.len())));
    };
    let cohort: u64 = cohort
        .parse()
        .map_err(|e| parse("", 0, format!("cohort {cohort:?}: {e}")))?;
    if cohort >= u64::from(params.num_cohorts()) {
        return Err(RapporError::Cohort {
            cohort,
            num_cohorts: params.num_cohorts(),
        });
    }
    let k = params.num_bits();
    let bits = parse_bit_string(irr, k)?;
    let report = Report::Rappor {
        cohort: cohort as u32,
        bits,
    };
    Ok(ReferenceReport {
        client: client.to_string(),
        bloom: parse_bit_string(bloom, k)?,
        prr: parse_bit_string(prr, k)?,
        report,
    })
}

/// Per-cohort counts of a reference `reports.csv` (what `sum_bits.py` computes).
pub fn counts_from_reports(path: &Path, params: RapporParams) -> Result<CohortCounts, RapporError> {
    let reports = read_reports(path, &params)?;
    let mut counts = CohortCounts::new(params);
    for r in &reports {
        counts.add_report(&r.report)?;
    }
    Ok(counts)
}

/// Writes reports in the reference `reports.csv` format (CRLF). Real clients
/// have no Bloom filter or PRR to share: pass all-zero bits for those columns.
pub fn write_reports<W: Write>(
    out: &mut W,
    params: &RapporParams,
    rows: &[ReferenceReport],
) -> Result<(), RapporError> {
    let k = params.num_bits();
    let wrap = |e| RapporError::Io {
        file: "reports.csv".into(),
        source: e,
    };
    out.write_all(b"client,cohort,bloom,prr,irr\r\n")
        .map_err(wrap)?;
    for r in rows {
        let Report::Rappor { cohort, bits } = &r.report else {
            return Err(RapporError::Sdk(ldp_sdk::Error::InvalidReport(
                "not a RAPPOR report".into(),
            )));
        };
        params.validate(*cohort, bits)?;
        write!(
            out,
            "{},{},{},{},{}\r\n",
            r.client,
            cohort,
            format_bit_string(&r.bloom, k),
            format_bit_string(&r.prr, k),
            format_bit_string(bits, k)
        )
        .map_err(wrap)?;
    }
    Ok(())
}

/// The file's lines, 1-based, with one trailing `\r` removed from each.
fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, RapporError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut line = line.map_err(|e| io(path, e))?;
            if line.ends_with('\r') {
                line.pop();
            }
            Ok((i + 1, line))
        })
        .collect()
}

fn parse(file: &str, line: usize, reason: String) -> RapporError {
    RapporError::Parse {
        file: file.to_string(),
        line,
        reason,
    }
}

fn io(path: &Path, source: std::io::Error) -> RapporError {
    RapporError::Io {
        file: path.display().to_string(),
        source,
    }
}
