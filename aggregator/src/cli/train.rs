//! `ldp train`: trains one model on `adult.data.csv` under a privacy model and
//! prints its accuracy on `adult.test.csv` with the (epsilon, delta) actually
//! spent (see [`crate::model`]). Local pipelines run in process, each record
//! playing one device.

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use ldp_sdk::LdpRng;
use rand::Rng;

use crate::cli::budget;
use crate::cli::connect::ConnectArgs;
use crate::dataset::adult;
use crate::model::Classifier;
use crate::model::demo::{ModelKind, train_one};
use crate::model::{PrivacyModel, baseline, dpsgd};

/// The model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    /// Naive Bayes.
    Nb,
    /// Logistic regression.
    Logreg,
}

/// Where the protection sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Privacy {
    /// Randomized on every device (LDP).
    Local,
    /// A trusted curator adds noise (central DP).
    Central,
    /// No privacy.
    None,
}

/// How local Naive Bayes spends epsilon over its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NbVariant {
    /// Each device reports one sampled attribute with the full epsilon (OUE).
    Sample,
    /// Each device reports every attribute with epsilon / m.
    Split,
}

/// Options of `ldp train`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The model.
    #[arg(long, value_enum)]
    pub model: Model,
    /// The privacy model.
    #[arg(long, value_enum)]
    pub privacy: Privacy,
    /// Epsilon (per device for local, of the release for central).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub epsilon: f64,
    /// Delta of DP-SGD (central logistic regression).
    #[arg(long, default_value_t = 1e-5)]
    pub delta: f64,
    /// Local Naive Bayes variant.
    #[arg(long, value_enum, default_value_t = NbVariant::Sample)]
    pub nb_variant: NbVariant,
    /// Seed for a reproducible simulation (seeded noise is not private).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Central training only: record the release in the server's privacy ledger
    /// under this data set *before* training (through `Admin.RecordRelease` on
    /// `--connect`); a refused release (over budget) stops here, nothing is trained.
    #[arg(long, value_name = "DATASET")]
    pub record_dataset: Option<String>,
    /// Release id for `--record-dataset` (idempotency key; default: a fresh random id).
    #[arg(long, requires = "record_dataset")]
    pub release_id: Option<String>,
    #[command(flatten)]
    conn: ConnectArgs,
}

/// Runs `ldp train`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Checked for every privacy model, so a meaningless value is never ignored.
    anyhow::ensure!(
        args.delta > 0.0 && args.delta < 1.0,
        "--delta {} must be in (0, 1)",
        args.delta
    );
    if let Some(dataset) = &args.record_dataset {
        record_central_release(&args, dataset).await?;
    }
    tokio::task::spawn_blocking(move || train(args)).await?
}

/// Records the central release `args` is about to make; refuses local and
/// non-private training (they make no central release).
async fn record_central_release(args: &Args, dataset: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.privacy == Privacy::Central,
        "--record-dataset records central releases; --privacy {:?} makes none",
        args.privacy
    );
    let id = match &args.release_id {
        Some(id) => id.clone(),
        None => {
            let mut rng = LdpRng::from_os();
            format!("train-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
        }
    };
    let request = match args.model {
        Model::Nb => budget::central_nb_release(&id, dataset, args.epsilon)?,
        Model::Logreg => budget::dp_sgd_release(
            &id,
            dataset,
            &dpsgd::Params::default(),
            args.epsilon,
            args.delta,
        )?,
    };
    let after = budget::record(&args.conn, request).await?;
    eprintln!(
        "recorded release {id:?} in data set {dataset:?}: spent epsilon {:.6} of {}",
        after.spent_epsilon, after.budget_epsilon
    );
    Ok(())
}

fn train(args: Args) -> anyhow::Result<()> {
    let root = adult::repo_root();
    let train = adult::load(&adult::train_path(&root)).context("training data")?;
    let test = adult::load(&adult::test_path(&root)).context("test data")?;
    let mut rng = match args.seed {
        Some(seed) => LdpRng::seeded_for_simulation(seed),
        None => LdpRng::from_os(),
    };
    let privacy = match args.privacy {
        Privacy::Local => PrivacyModel::Local,
        Privacy::Central => PrivacyModel::Central,
        Privacy::None => PrivacyModel::None,
    };
    let kind = match (args.model, privacy, args.nb_variant) {
        (Model::Logreg, ..) => ModelKind::LogisticRegression,
        (Model::Nb, PrivacyModel::Local, NbVariant::Sample) => ModelKind::NaiveBayesSampled,
        (Model::Nb, PrivacyModel::Local, NbVariant::Split) => ModelKind::NaiveBayesSplit,
        (Model::Nb, ..) => ModelKind::NaiveBayes,
    };
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
        bar.set_style(style.clone());
    }
    bar.set_message(format!("{} ({})", kind.label(), privacy.label()));
    let row = train_one(
        kind,
        privacy,
        args.epsilon,
        args.delta,
        &train,
        &test,
        &mut rng,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )?;
    bar.finish_and_clear();
    let majority = baseline::Majority::fit(&train).accuracy(&test);
    println!("model:          {}", row.model.label());
    println!("privacy:        {}", row.spent.model.label());
    println!(
        "test accuracy:  {:.4} (majority class {majority:.4})",
        row.accuracy
    );
    if privacy != PrivacyModel::None {
        println!(
            "spent:          epsilon {:.4}, delta {}",
            row.spent.epsilon,
            row.spent.delta_text()
        );
    }
    Ok(())
}
