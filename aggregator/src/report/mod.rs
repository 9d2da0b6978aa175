//! Self-contained HTML reports with inline SVG charts.
//!
//! A small builder shared by the demos: a [`Report`] has a title and
//! [`Section`]s; a section holds paragraphs, tables and charts in order. Charts
//! are drawn as inline SVG (no scripts, no external files), so the report is one
//! file that any browser opens offline.
//! - [`BarChart`]: per label, the true value against the estimate with its
//!   confidence-interval whisker (horizontal bars, so long labels stay readable);
//! - [`LineChart`]: series of points, e.g. accuracy against epsilon, with an
//!   optional interval band per point.
//!
//! All text is HTML-escaped.
//!
//! ```
//! use ldp_aggregator::report::{Bar, BarChart, Report, Section};
//! let mut report = Report::new("Example");
//! report.add_section(
//!     Section::new("Colors").paragraph("1,000 reports.").bar_chart(
//!         BarChart::new(vec![Bar { label: "red".into(), truth: 0.3, estimate: 0.32, ci: (0.27, 0.37) }])
//!             .percent(),
//!     ),
//! );
//! assert!(report.to_html().contains("<svg"));
//! ```

mod svg;

use std::fmt::Write as _;
use std::path::Path;

pub use svg::{Bar, BarChart, LineChart, Series};

/// An HTML report: a title and sections, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    title: String,
    sections: Vec<Section>,
}

/// One section: a heading and blocks (paragraphs, tables, charts) in order.
#[derive(Debug, Clone)]
pub struct Section {
    heading: String,
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
enum Block {
    Paragraph(String),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Svg(String),
}

impl Section {
    /// An empty section titled `heading`.
    pub fn new(heading: impl Into<String>) -> Self {
        Self {
            heading: heading.into(),
            blocks: Vec::new(),
        }
    }

    /// Appends a paragraph of plain text.
    pub fn paragraph(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Paragraph(text.into()));
        self
    }

    /// Appends a table of plain-text cells.
    pub fn table(mut self, header: Vec<String>, rows: Vec<Vec<String>>) -> Self {
        self.blocks.push(Block::Table { header, rows });
        self
    }

    /// Appends a bar chart.
    pub fn bar_chart(mut self, chart: BarChart) -> Self {
        self.blocks.push(Block::Svg(chart.to_svg()));
        self
    }

    /// Appends a line chart.
    pub fn line_chart(mut self, chart: LineChart) -> Self {
        self.blocks.push(Block::Svg(chart.to_svg()));
        self
    }
}

impl Report {
    /// An empty report titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            sections: Vec::new(),
        }
    }

    /// Appends a section.
    pub fn add_section(&mut self, section: Section) -> &mut Self {
        self.sections.push(section);
        self
    }

    /// The complete HTML document.
    pub fn to_html(&self) -> String {
        let mut html = String::with_capacity(64 * 1024);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><style>{STYLE}</style></head><body><main>\
             <h1>{title}</h1>\n",
            title = escape(&self.title)
        );
        for s in &self.sections {
            let _ = writeln!(html, "<section><h2>{}</h2>", escape(&s.heading));
            for b in &s.blocks {
                match b {
                    Block::Paragraph(p) => {
                        let _ = writeln!(html, "<p>{}</p>", escape(p));
                    }
                    Block::Table { header, rows } => {
                        html.push_str("<table><thead><tr>");
                        for h in header {
                            let _ = write!(html, "<th>{}</th>", escape(h));
                        }
                        html.push_str("</tr></thead><tbody>");
                        for row in rows {
                            html.push_str("<tr>");
                            for c in row {
                                let _ = write!(html, "<td>{}</td>", escape(c));
                            }
                            html.push_str("</tr>");
                        }
                        html.push_str("</tbody></table>\n");
                    }
                    Block::Svg(svg) => {
                        let _ = writeln!(html, "<figure>{svg}</figure>");
                    }
                }
            }
            html.push_str("</section>\n");
        }
        html.push_str("</main></body></html>\n");
        html
    }

    /// Writes the document to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_html())
    }
}

const STYLE: &str = "\
body{margin:0;background:#f4f5f7;color:#1f2933;\
font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}\
main{max-width:960px;margin:0 auto;padding:24px}\
h1{font-size:26px;margin:8px 0 20px}\
h2{font-size:18px;margin:0 0 8px}\
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);\
padding:18px 22px;margin:0 0 18px}\
p{margin:4px 0}figure{margin:10px 0 0}svg{max-width:100%;height:auto}\
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}\
th,td{border-bottom:1px solid #e4e7eb;padding:4px 10px;text-align:right}\
th:first-child,td:first-child{text-align:left}";

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sections_keep_their_order() {
        let mut r = Report::new("a <b> & c");
        r.add_section(Section::new("first").paragraph("x < y"));
        r.add_section(Section::new("second").table(
            vec!["k".into(), "v".into()],
            vec![vec!["<script>".into(), "1".into()]],
        ));
        let html = r.to_html();
        assert!(html.contains("<title>a &lt;b&gt; &amp; c</title>"));
        assert!(html.contains("<p>x &lt; y</p>"));
        assert!(!html.contains("<script>"));
        assert!(html.find("first").unwrap() < html.find("second").unwrap());
    }

    #[test]
    fn writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        Report::new("t").write(&path).unwrap();
        assert!(
            std::fs::read_to_string(path)
                .unwrap()
                .starts_with("<!DOCTYPE html>")
        );
    }
}
