//! Feature encodings of Adult records from the data set's public category lists and
//! bounds ([`crate::dataset::adult::CATEGORICAL`], [`crate::dataset::adult::NUMERIC`]).
//!
//! Two encodings:
//! - [`FeatureSpec`] for logistic regression: one-hot categoricals, indicators of
//!   single categories, and numerics scaled to [0, 1] by their public bounds
//!   (linearly, or by `ln(1 + x) / ln(1 + hi)` for the heavy-tailed capital
//!   columns), plus a constant intercept feature. **Every coordinate lies in
//!   [0, 1]** (or [-1, 1] for [`FeatureSpec::centered`]), so a logistic-loss
//!   gradient has every coordinate in [-1, 1].
//! - [`NbAttribute`] for Naive Bayes: categorical attributes as they are, numerics
//!   cut into bins at round, public cut points fixed before looking at the data.
//!
//! Nothing here reads statistics of the data: the encodings are functions of one
//! record and public constants, so private pipelines can use them for free.
//!
//! ```
//! use ldp_aggregator::model::features::FeatureSpec;
//! let spec = FeatureSpec::full();
//! assert!(spec.dim() > 100);
//! ```

use crate::dataset::adult::{CATEGORICAL, NUMERIC, Record};

/// Index of `income` in [`CATEGORICAL`]; never used as a feature.
const INCOME: usize = Record::INCOME;

/// How a numeric attribute is scaled into [0, 1] from its public bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `(x - lo) / (hi - lo)`.
    Linear,
    /// `ln(1 + x - lo) / ln(1 + hi - lo)`, for heavy-tailed money columns.
    Log,
}

/// One block of features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// One-hot encoding of categorical attribute `i` (index into [`CATEGORICAL`]).
    OneHot(usize),
    /// 1 when categorical attribute `.0` equals category `.1`, else 0.
    Indicator(usize, u32),
    /// Numeric attribute `i` (index into [`NUMERIC`]) scaled into [0, 1].
    Numeric(usize, Scale),
}

impl Feature {
    /// Number of coordinates of this block.
    pub fn width(&self) -> usize {
        match self {
            Self::OneHot(i) => CATEGORICAL[*i].1.len(),
            Self::Indicator(..) | Self::Numeric(..) => 1,
        }
    }

    /// Human-readable names of the coordinates.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::OneHot(i) => {
                let (attr, cats) = CATEGORICAL[*i];
                cats.iter().map(|c| format!("{attr}={c}")).collect()
            }
            Self::Indicator(i, v) => {
                let (attr, cats) = CATEGORICAL[*i];
                vec![format!("{attr}={}", cats[*v as usize])]
            }
            Self::Numeric(i, _) => vec![NUMERIC[*i].0.to_string()],
        }
    }
}

/// A feature encoding for logistic regression: blocks in order, then a constant 1
/// (the intercept) as the last coordinate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    blocks: Vec<Feature>,
    centered: bool,
}

impl FeatureSpec {
    /// Blocks from a list; categorical indices must be below [`CATEGORICAL`]'s
    /// length and not the income label, numeric ones below [`NUMERIC`]'s length.
    pub fn new(blocks: Vec<Feature>) -> Result<Self, super::ModelError> {
        for b in &blocks {
            let ok = match *b {
                Feature::OneHot(i) => i < CATEGORICAL.len() && i != INCOME,
                Feature::Indicator(i, v) => {
                    i < CATEGORICAL.len() && i != INCOME && (v as usize) < CATEGORICAL[i].1.len()
                }
                Feature::Numeric(i, _) => i < NUMERIC.len(),
            };
            if !ok {
                return Err(super::ModelError::InvalidParameter {
                    name: "features",
                    reason: format!("{b:?} is not a feature of the Adult data set"),
                });
            }
        }
        Ok(Self {
            blocks,
            centered: false,
        })
    }

    /// The same blocks mapped to [-1, 1] (`2 v - 1`, the intercept stays 1): the
    /// public midpoint of every bound becomes 0, which conditions SGD better when
    /// few, noisy steps are available (LDP-SGD).
    pub fn centered(mut self) -> Self {
        self.centered = true;
        self
    }

    /// Every attribute: one-hot for each categorical except the label (the age
    /// bucket too, which lets the model bend the age effect), every numeric
    /// (capital columns log-scaled). Used by the non-private and central models.
    pub fn full() -> Self {
        let mut blocks: Vec<Feature> = (0..INCOME).map(Feature::OneHot).collect();
        blocks.extend([
            Feature::Numeric(0, Scale::Linear),
            Feature::Numeric(1, Scale::Linear),
            Feature::Numeric(2, Scale::Linear),
            Feature::Numeric(3, Scale::Log),
            Feature::Numeric(4, Scale::Log),
        ]);
        Self {
            blocks,
            centered: false,
        }
    }

    /// A compact encoding for local DP, where the noise of each gradient grows with
    /// the dimension: the five numerics plus one indicator, married
    /// (civilian spouse), the strongest single category of the census income
    /// literature. Fixed a priori; the tuning split only compared it raw and
    /// [centered](FeatureSpec::centered).
    pub fn compact() -> Self {
        Self {
            blocks: vec![
                // marital-status = Married-civ-spouse
                Feature::Indicator(3, 0),
                Feature::Numeric(2, Scale::Linear),
                Feature::Numeric(3, Scale::Log),
                Feature::Numeric(0, Scale::Linear),
                Feature::Numeric(1, Scale::Linear),
                Feature::Numeric(4, Scale::Log),
            ],
            centered: false,
        }
    }

    /// The blocks.
    pub fn blocks(&self) -> &[Feature] {
        &self.blocks
    }

    /// Number of coordinates, including the intercept.
    pub fn dim(&self) -> usize {
        self.blocks.iter().map(Feature::width).sum::<usize>() + 1
    }

    /// Names of the coordinates, the intercept last.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.blocks.iter().flat_map(|b| b.names()).collect();
        names.push("intercept".into());
        names
    }

    /// Writes the encoding of `record` into `out` (cleared first). Every coordinate
    /// is in [0, 1] ([-1, 1] when centered); the last one is 1.
    pub fn encode_into(&self, record: &Record, out: &mut Vec<f64>) {
        out.clear();
        for block in &self.blocks {
            match *block {
                Feature::OneHot(i) => {
                    let start = out.len();
                    out.resize(start + CATEGORICAL[i].1.len(), 0.0);
                    out[start + record.categorical[i] as usize] = 1.0;
                }
                Feature::Indicator(i, v) => {
                    out.push(f64::from(u8::from(record.categorical[i] == v)));
                }
                Feature::Numeric(i, scale) => {
                    out.push(scaled(record.numeric[i], NUMERIC[i].1, scale))
                }
            }
        }
        if self.centered {
            out.iter_mut().for_each(|v| *v = 2.0 * *v - 1.0);
        }
        out.push(1.0);
    }

    /// The encoding of `record` as a new vector.
    pub fn encode(&self, record: &Record) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.dim());
        self.encode_into(record, &mut out);
        out
    }

    /// Encodes a whole data set: row-major features and labels.
    pub fn encode_all(&self, records: &[Record]) -> Encoded {
        let dim = self.dim();
        let mut x = Vec::with_capacity(records.len() * dim);
        let mut row = Vec::with_capacity(dim);
        for r in records {
            self.encode_into(r, &mut row);
            x.extend_from_slice(&row);
        }
        Encoded {
            dim,
            x,
            y: records.iter().map(Record::high_income).collect(),
        }
    }
}

/// Scales `x` in `[lo, hi]` into [0, 1]. Records from the loader are always within
/// their bounds; anything else is clamped into [0, 1] so that the [0, 1] guarantee
/// of every coordinate holds for any input.
fn scaled(x: f64, (lo, hi): (f64, f64), scale: Scale) -> f64 {
    let v = match scale {
        Scale::Linear => (x - lo) / (hi - lo),
        Scale::Log => (x - lo).max(0.0).ln_1p() / (hi - lo).ln_1p(),
    };
    v.clamp(0.0, 1.0)
}

/// An encoded data set: `y[i]` is the label of row `x[i * dim .. (i + 1) * dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Row length.
    pub dim: usize,
    /// Row-major features.
    pub x: Vec<f64>,
    /// Labels (`true` = `>50K`).
    pub y: Vec<bool>,
}

impl Encoded {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }
}

/// A discrete attribute for Naive Bayes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NbAttribute {
    /// Categorical attribute `i` (index into [`CATEGORICAL`]), its public domain.
    Categorical(usize),
    /// Numeric attribute `numeric` (index into [`NUMERIC`]) cut at public points:
    /// bin `b` holds `cuts[b-1] <= x < cuts[b]`.
    Binned {
        /// Index into [`NUMERIC`].
        numeric: usize,
        /// Increasing cut points.
        cuts: &'static [f64],
    },
}

/// Public bins of hours per week: part time, 35-39, exactly 40, 41-49, 50 and more.
pub const HOURS_CUTS: &[f64] = &[35.0, 40.0, 41.0, 50.0];
/// Public bins of capital gain: none, under 5,000, 5,000-9,999, 10,000 and more.
pub const GAIN_CUTS: &[f64] = &[1.0, 5_000.0, 10_000.0];
/// Public bins of education-num by degree level: up to high school (1-9), some
/// college or associate (10-12), bachelors (13), graduate (14-16).
pub const EDUCATION_LEVEL_CUTS: &[f64] = &[10.0, 13.0, 14.0];
/// Public bins of capital loss: none, under 1,500, 1,500-1,999, 2,000 and more.
pub const LOSS_CUTS: &[f64] = &[1.0, 1_500.0, 2_000.0];

impl NbAttribute {
    /// The twelve attributes of the Naive Bayes models: eight categoricals, the age
    /// bucket, and binned hours per week, capital gain and capital loss
    /// (education-num duplicates education and is left out).
    pub fn all() -> Vec<NbAttribute> {
        let mut attrs: Vec<NbAttribute> = (0..INCOME).map(NbAttribute::Categorical).collect();
        attrs.extend([
            NbAttribute::Binned {
                numeric: 1,
                cuts: HOURS_CUTS,
            },
            NbAttribute::Binned {
                numeric: 3,
                cuts: GAIN_CUTS,
            },
            NbAttribute::Binned {
                numeric: 4,
                cuts: LOSS_CUTS,
            },
        ]);
        attrs
    }

    /// Education as four degree levels (binned education-num): a coarser domain
    /// than `education`, for the local models, where fewer cells mean larger
    /// counts per cell and smaller relative noise.
    pub const EDUCATION_LEVEL: NbAttribute = NbAttribute::Binned {
        numeric: 2,
        cuts: EDUCATION_LEVEL_CUTS,
    };

    /// The attribute named `name` among [`NbAttribute::all`] and
    /// [`NbAttribute::EDUCATION_LEVEL`] (named `education-num`).
    pub fn by_name(name: &str) -> Option<NbAttribute> {
        Self::all()
            .into_iter()
            .chain([Self::EDUCATION_LEVEL])
            .find(|a| a.name() == name)
    }

    /// The attribute's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Categorical(i) => CATEGORICAL[*i].0,
            Self::Binned { numeric, .. } => NUMERIC[*numeric].0,
        }
    }

    /// Size of the public domain.
    pub fn domain_size(&self) -> u32 {
        match self {
            Self::Categorical(i) => CATEGORICAL[*i].1.len() as u32,
            Self::Binned { cuts, .. } => cuts.len() as u32 + 1,
        }
    }

    /// The record's value, in `[0, domain_size)`.
    pub fn value(&self, record: &Record) -> u32 {
        match self {
            Self::Categorical(i) => record.categorical[*i],
            Self::Binned { numeric, cuts } => {
                let x = record.numeric[*numeric];
                cuts.iter().filter(|&&c| x >= c).count() as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::adult;

    #[test]
    fn every_coordinate_is_in_unit_interval_and_dims_match() {
        let root = adult::repo_root();
        let train = adult::load(&adult::train_path(&root)).unwrap();
        for spec in [
            FeatureSpec::full(),
            FeatureSpec::compact(),
            FeatureSpec::compact().centered(),
        ] {
            let enc = spec.encode_all(&train);
            assert_eq!(enc.x.len(), train.len() * spec.dim());
            assert_eq!(spec.names().len(), spec.dim());
            let lo = if spec.centered { -1.0 } else { 0.0 };
            assert!(enc.x.iter().all(|v| (lo..=1.0).contains(v)));
            assert!((0..enc.len()).all(|i| enc.row(i)[spec.dim() - 1] == 1.0));
        }
    }

    #[test]
    fn bins_follow_the_cut_points() {
        let hours = NbAttribute::by_name("hours-per-week").unwrap();
        let mut r = adult::Record {
            categorical: [0; 10],
            numeric: [30.0, 40.0, 9.0, 0.0, 0.0],
        };
        assert_eq!(hours.value(&r), 2);
        r.numeric[1] = 39.0;
        assert_eq!(hours.value(&r), 1);
        r.numeric[1] = 99.0;
        assert_eq!(hours.value(&r), 4);
        assert_eq!(hours.domain_size(), 5);
        assert_eq!(NbAttribute::all().len(), 12);
    }

    #[test]
    fn the_label_is_never_a_feature() {
        assert!(FeatureSpec::new(vec![Feature::OneHot(INCOME)]).is_err());
        assert!(FeatureSpec::new(vec![Feature::Indicator(3, 99)]).is_err());
    }
}
