//! The demo's printed tables and its HTML report.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};

use super::mechanisms::label;
use super::{CONFIDENCE, CategoricalResult, NumericResult, Outcome};
use crate::report::{Bar, BarChart, Report, Section};

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn pp(x: f64) -> String {
    let s = format!("{:+.2} pp", 100.0 * x);
    if s == "-0.00 pp" {
        "+0.00 pp".into()
    } else {
        s
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The run's summary lines (what was simulated, with which randomness).
pub fn summary(o: &Outcome) -> String {
    let population = if o.resampled {
        format!(
            "{} devices resampled from the {} records of adult.data.csv",
            thousands(o.devices),
            thousands(o.records as u64)
        )
    } else {
        format!(
            "{} devices, one per record of adult.data.csv",
            thousands(o.devices)
        )
    };
    let randomness = match o.seed {
        Some(seed) => format!(
            "seeded simulation (--seed {seed}): reproducible, and NOT private (the seed inverts the reports)"
        ),
        None => {
            "operating-system randomness (ChaCha12 seeded by the OS), as on real devices".into()
        }
    };
    let eps = o.epsilon.get();
    format!(
        "ldp demo: {population}\n\
         {n} reports per device, epsilon {eps} per report ({total} per device in total)\n\
         randomness: {randomness}\n\
         server: {server}\n\
         collected {reports} reports in {collect:.1} s ({rate} reports/s), total {total_time:.1} s\n",
        n = o.reports_per_device,
        total = eps * o.reports_per_device as f64,
        server = o.server,
        reports = thousands(o.devices * o.reports_per_device as u64),
        collect = o.collect_time.as_secs_f64(),
        rate = thousands(
            (o.devices as f64 * o.reports_per_device as f64
                / o.collect_time.as_secs_f64().max(1e-9)) as u64
        ),
        total_time = o.total_time.as_secs_f64(),
    )
}

fn categorical_table(c: &CategoricalResult) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "value",
        "true share",
        "estimate",
        "95% CI",
        "error",
        "in CI",
    ]);
    for v in &c.values {
        t.add_row(vec![
            Cell::new(&v.label),
            Cell::new(pct(v.true_share)).set_alignment(CellAlignment::Right),
            Cell::new(pct(v.estimate)).set_alignment(CellAlignment::Right),
            Cell::new(format!("[{}, {}]", pct(v.ci.0), pct(v.ci.1)))
                .set_alignment(CellAlignment::Right),
            Cell::new(pp(v.estimate - v.true_share)).set_alignment(CellAlignment::Right),
            Cell::new(if v.covered() { "yes" } else { "NO" }),
        ]);
    }
    t
}

fn categorical_heading(c: &CategoricalResult, eps: f64) -> String {
    format!(
        "{name}: {mech}, epsilon {eps} per report, {reports} reports, d = {d}\n\
         TV distance {tv:.4} (expected {etv:.4}); {cov}/{d} true shares inside their 95% CI",
        name = c.name,
        mech = label(&c.mechanism),
        reports = thousands(c.reports),
        d = c.values.len(),
        tv = c.tv_distance(),
        etv = c.expected_tv(),
        cov = c.covered(),
    )
}

fn numeric_table(numeric: &[NumericResult], eps: f64) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "attribute",
        "mechanism",
        "epsilon",
        "true mean",
        "estimate",
        "95% CI",
        "error",
        "in CI",
    ]);
    for n in numeric {
        t.add_row(vec![
            Cell::new(&n.name),
            Cell::new(label(&n.mechanism)),
            Cell::new(eps),
            Cell::new(format!("{:.3}", n.true_mean)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.3}", n.estimate)).set_alignment(CellAlignment::Right),
            Cell::new(format!("[{:.3}, {:.3}]", n.ci.0, n.ci.1))
                .set_alignment(CellAlignment::Right),
            Cell::new(format!("{:+.3}", n.estimate - n.true_mean))
                .set_alignment(CellAlignment::Right),
            Cell::new(if n.covered() { "yes" } else { "NO" }),
        ]);
    }
    t
}

/// Every estimate against the truth, as printed by `ldp demo` (without timings,
/// so that two seeded runs print exactly the same text).
pub fn render_tables(o: &Outcome) -> String {
    let eps = o.epsilon.get();
    let mut out = String::new();
    for c in &o.categorical {
        out.push_str(&categorical_heading(c, eps));
        out.push('\n');
        out.push_str(&categorical_table(c).to_string());
        out.push_str("\n\n");
    }
    out.push_str("numeric attributes (mean)\n");
    out.push_str(&numeric_table(&o.numeric, eps).to_string());
    out.push_str(&format!(
        "\n\n{covered} of {k} true values lie inside their {conf}% interval ({rate:.1}%; about {conf}% expected)\n",
        covered = o.covered(),
        k = o.intervals(),
        conf = (CONFIDENCE * 100.0).round(),
        rate = 100.0 * o.covered() as f64 / o.intervals().max(1) as f64,
    ));
    out
}

/// The HTML report: one bar chart per categorical attribute (true share against
/// estimate with its interval) and the numeric means.
pub fn html_report(o: &Outcome) -> Report {
    let eps = o.epsilon.get();
    let mut report = Report::new("ldp demo: the Adult census under local differential privacy");
    let mut intro = Section::new("What happened");
    for line in summary(o).lines() {
        intro = intro.paragraph(line);
    }
    intro = intro.paragraph(format!(
        "{} of {} true values lie inside their 95% confidence interval.",
        o.covered(),
        o.intervals()
    ));
    let mut rows: Vec<Vec<String>> = o
        .categorical
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                label(&c.mechanism).to_string(),
                c.values.len().to_string(),
                format!("{:.4}", c.tv_distance()),
                format!("{:.4}", c.expected_tv()),
                format!("{}/{}", c.covered(), c.values.len()),
            ]
        })
        .collect();
    rows.extend(o.numeric.iter().map(|n| {
        vec![
            n.name.clone(),
            label(&n.mechanism).to_string(),
            "mean".into(),
            format!("|error| {:.3}", (n.estimate - n.true_mean).abs()),
            format!("se {:.3}", n.std_error),
            format!("{}/1", u8::from(n.covered())),
        ]
    }));
    intro = intro.table(
        [
            "attribute",
            "mechanism",
            "d (or mean)",
            "error: TV distance (or |mean error|)",
            "expected: TV (or standard error)",
            "in 95% CI",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    );
    report.add_section(intro);
    for c in &o.categorical {
        let chart = BarChart::new(
            c.values
                .iter()
                .map(|v| Bar {
                    label: v.label.clone(),
                    truth: v.true_share,
                    estimate: v.estimate,
                    ci: v.ci,
                })
                .collect(),
        )
        .percent();
        let section = Section::new(format!("{} ({}, ε = {eps})", c.name, label(&c.mechanism)))
            .paragraph(format!(
                "{} reports. Total variation distance {:.4} (expected {:.4} from the standard errors); {} of {} true shares inside their interval.",
                thousands(c.reports),
                c.tv_distance(),
                c.expected_tv(),
                c.covered(),
                c.values.len()
            ))
            .bar_chart(chart);
        report.add_section(section);
    }
    let means = BarChart::new(
        o.numeric
            .iter()
            .map(|n| Bar {
                label: format!("{} ({})", n.name, label(&n.mechanism)),
                truth: n.true_mean,
                estimate: n.estimate,
                ci: n.ci,
            })
            .collect(),
    );
    report.add_section(
        Section::new(format!("Numeric attributes: means (ε = {eps})"))
            .paragraph("True mean against the estimated mean with its 95% interval.")
            .bar_chart(means),
    );
    report
}
