//! The UCI Adult (Census Income) data set: `data/adult/adult.{data,test}.csv`.
//!
//! Each record is one simulated device. Categorical attributes are indices into the
//! category lists of the data set's documentation (`adult.names`), with the missing
//! value `?` appended as a last category where the data has missing values, so that
//! a device with a missing value still reports (and the domain is public).
//! Numeric bounds are public too: ages 17 to 90 (the extract kept ages above 16; the
//! census top-codes age at 90), hours per week 1 to 99 (census field range), capital
//! gain and loss 0 to 99,999 (census top code), education-num 1 to 16.

use std::path::{Path, PathBuf};

use super::DatasetError;

/// `workclass` categories (documented list, then `?`).
pub const WORKCLASS: &[&str] = &[
    "Private",
    "Self-emp-not-inc",
    "Self-emp-inc",
    "Federal-gov",
    "Local-gov",
    "State-gov",
    "Without-pay",
    "Never-worked",
    "?",
];
/// `education` categories, in the documented order.
pub const EDUCATION: &[&str] = &[
    "Bachelors",
    "Some-college",
    "11th",
    "HS-grad",
    "Prof-school",
    "Assoc-acdm",
    "Assoc-voc",
    "9th",
    "7th-8th",
    "12th",
    "Masters",
    "1st-4th",
    "10th",
    "Doctorate",
    "5th-6th",
    "Preschool",
];
/// `marital-status` categories.
pub const MARITAL_STATUS: &[&str] = &[
    "Married-civ-spouse",
    "Divorced",
    "Never-married",
    "Separated",
    "Widowed",
    "Married-spouse-absent",
    "Married-AF-spouse",
];
/// `occupation` categories (documented list, then `?`).
pub const OCCUPATION: &[&str] = &[
    "Tech-support",
    "Craft-repair",
    "Other-service",
    "Sales",
    "Exec-managerial",
    "Prof-specialty",
    "Handlers-cleaners",
    "Machine-op-inspct",
    "Adm-clerical",
    "Farming-fishing",
    "Transport-moving",
    "Priv-house-serv",
    "Protective-serv",
    "Armed-Forces",
    "?",
];
/// `relationship` categories.
pub const RELATIONSHIP: &[&str] = &[
    "Wife",
    "Own-child",
    "Husband",
    "Not-in-family",
    "Other-relative",
    "Unmarried",
];
/// `race` categories.
pub const RACE: &[&str] = &[
    "White",
    "Asian-Pac-Islander",
    "Amer-Indian-Eskimo",
    "Other",
    "Black",
];
/// `sex` categories.
pub const SEX: &[&str] = &["Female", "Male"];
/// `native-country` categories (documented list, then `?`).
pub const NATIVE_COUNTRY: &[&str] = &[
    "United-States",
    "Cambodia",
    "England",
    "Puerto-Rico",
    "Canada",
    "Germany",
    "Outlying-US(Guam-USVI-etc)",
    "India",
    "Japan",
    "Greece",
    "South",
    "China",
    "Cuba",
    "Iran",
    "Honduras",
    "Philippines",
    "Italy",
    "Poland",
    "Jamaica",
    "Vietnam",
    "Mexico",
    "Portugal",
    "Ireland",
    "France",
    "Dominican-Republic",
    "Laos",
    "Ecuador",
    "Taiwan",
    "Haiti",
    "Columbia",
    "Hungary",
    "Guatemala",
    "Nicaragua",
    "Scotland",
    "Thailand",
    "Yugoslavia",
    "El-Salvador",
    "Trinadad&Tobago",
    "Peru",
    "Hong",
    "Holand-Netherlands",
    "?",
];
/// Income class; index 1 (`>50K`) is the positive class.
pub const INCOME: &[&str] = &["<=50K", ">50K"];
/// Ten-year age buckets over the public age range 17..=90.
pub const AGE_BUCKETS: &[&str] = &[
    "17-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-90",
];

/// Public bounds of `age`.
pub const AGE_RANGE: (f64, f64) = (17.0, 90.0);
/// Public bounds of `hours-per-week`.
pub const HOURS_RANGE: (f64, f64) = (1.0, 99.0);
/// Public bounds of `capital-gain` and `capital-loss`.
pub const CAPITAL_RANGE: (f64, f64) = (0.0, 99_999.0);
/// Public bounds of `education-num`.
pub const EDUCATION_NUM_RANGE: (f64, f64) = (1.0, 16.0);

/// The categorical attributes a device reports, with their public domains, in a
/// fixed order (the index into [`Record::categorical`]).
pub const CATEGORICAL: &[(&str, &[&str])] = &[
    ("age-bucket", AGE_BUCKETS),
    ("workclass", WORKCLASS),
    ("education", EDUCATION),
    ("marital-status", MARITAL_STATUS),
    ("occupation", OCCUPATION),
    ("relationship", RELATIONSHIP),
    ("race", RACE),
    ("sex", SEX),
    ("native-country", NATIVE_COUNTRY),
    ("income", INCOME),
];

/// The numeric attributes with their public bounds, in a fixed order (the index
/// into [`Record::numeric`]).
pub const NUMERIC: &[(&str, (f64, f64))] = &[
    ("age", AGE_RANGE),
    ("hours-per-week", HOURS_RANGE),
    ("education-num", EDUCATION_NUM_RANGE),
    ("capital-gain", CAPITAL_RANGE),
    ("capital-loss", CAPITAL_RANGE),
];

/// One Adult record. Every categorical value is a valid index into its domain in
/// [`CATEGORICAL`]; every number lies within its bounds in [`NUMERIC`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Indices for the attributes of [`CATEGORICAL`], in that order.
    pub categorical: [u32; 10],
    /// Values for the attributes of [`NUMERIC`], in that order.
    pub numeric: [f64; 5],
}

impl Record {
    /// Index of `income` in [`Record::categorical`].
    pub const INCOME: usize = 9;

    /// True when the income class is `>50K`.
    pub fn high_income(&self) -> bool {
        self.categorical[Self::INCOME] == 1
    }

    /// The categorical value of the attribute named `name`.
    pub fn categorical_by_name(&self, name: &str) -> Option<u32> {
        CATEGORICAL
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| self.categorical[i])
    }

    /// The numeric value of the attribute named `name`.
    pub fn numeric_by_name(&self, name: &str) -> Option<f64> {
        NUMERIC
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| self.numeric[i])
    }
}

/// `data/adult/adult.data.csv` (32,561 training records) under `root`.
pub fn train_path(root: &Path) -> PathBuf {
    root.join("data/adult/adult.data.csv")
}

/// `data/adult/adult.test.csv` (16,281 test records) under `root`.
pub fn test_path(root: &Path) -> PathBuf {
    root.join("data/adult/adult.test.csv")
}

/// The repository root, for binaries and tests run from anywhere inside it: the
/// nearest ancestor of the current directory (or of this crate) that has `data/adult`.
pub fn repo_root() -> PathBuf {
    let from_cwd = std::env::current_dir().ok();
    let from_crate = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for start in [from_cwd, from_crate].into_iter().flatten() {
        for dir in start.ancestors() {
            if dir.join("data/adult").is_dir() {
                return dir.to_path_buf();
            }
        }
    }
    PathBuf::from(".")
}

/// Reads an Adult CSV file (header row, comma-separated, `?` for missing values).
/// Any unknown category or out-of-bounds number is an error naming the line.
pub fn load(path: &Path) -> Result<Vec<Record>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).map_err(|reason| DatasetError::Format {
                path: path.display().to_string(),
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Record, String> {
    let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    if fields.len() != 15 {
        return Err(format!("expected 15 fields, found {}", fields.len()));
    }
    let number = |i: usize, (lo, hi): (f64, f64)| -> Result<f64, String> {
        let x: f64 = fields[i]
            .parse()
            .map_err(|_| format!("field {} is not a number: {:?}", i + 1, fields[i]))?;
        if (lo..=hi).contains(&x) {
            Ok(x)
        } else {
            Err(format!("field {} = {x} outside [{lo}, {hi}]", i + 1))
        }
    };
    let category = |i: usize, domain: &[&str]| -> Result<u32, String> {
        domain
            .iter()
            .position(|c| *c == fields[i])
            .map(|p| p as u32)
            .ok_or_else(|| format!("field {}: unknown category {:?}", i + 1, fields[i]))
    };
    let age = number(0, AGE_RANGE)?;
    let age_bucket = ((age as u32).saturating_sub(10) / 10).min(AGE_BUCKETS.len() as u32 - 1);
    Ok(Record {
        categorical: [
            age_bucket,
            category(1, WORKCLASS)?,
            category(3, EDUCATION)?,
            category(5, MARITAL_STATUS)?,
            category(6, OCCUPATION)?,
            category(7, RELATIONSHIP)?,
            category(8, RACE)?,
            category(9, SEX)?,
            category(13, NATIVE_COUNTRY)?,
            category(14, INCOME)?,
        ],
        numeric: [
            age,
            number(12, HOURS_RANGE)?,
            number(4, EDUCATION_NUM_RANGE)?,
            number(10, CAPITAL_RANGE)?,
            number(11, CAPITAL_RANGE)?,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_both_files_with_documented_sizes() {
        let root = repo_root();
        let train = load(&train_path(&root)).expect("train file");
        let test = load(&test_path(&root)).expect("test file");
        assert_eq!(train.len(), 32_561);
        assert_eq!(test.len(), 16_281);
        // The data README: 7,841 of the training records are >50K.
        assert_eq!(train.iter().filter(|r| r.high_income()).count(), 7_841);
    }

    #[test]
    fn age_buckets_are_ten_years() {
        let line = "17,Private,1,11th,7,Never-married,Sales,Own-child,White,Male,0,0,20,United-States,<=50K";
        assert_eq!(parse_line(line).unwrap().categorical[0], 0);
        let line = line.replacen("17", "29", 1);
        assert_eq!(parse_line(&line).unwrap().categorical[0], 1);
        let line = line.replacen("29", "90", 1);
        assert_eq!(parse_line(&line).unwrap().categorical[0], 7);
    }

    #[test]
    fn unknown_category_is_an_error_naming_the_field() {
        let line = "30,Pirate,1,11th,7,Never-married,Sales,Own-child,White,Male,0,0,20,United-States,<=50K";
        assert!(parse_line(line).unwrap_err().contains("Pirate"));
    }
}
