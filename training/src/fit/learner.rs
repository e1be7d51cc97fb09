//! What every learner shares: the encoded rows and their folds, the interface each algorithm
//! implements, and why a fit is refused. Of the other fitting modules it imports only
//! [`super::options`]; the learners all build on it.

use super::options::OptionsError;
use carecast_models::Estimator;
use carecast_models::calibration::Calibration;
use carecast_models::preprocess::Preprocessor;

/// Training rows after encoding: row-major columns, labels, each row's key hash, and (event
/// tasks) each row's follow-up for time-to-event models: how long, as a share of the horizon
/// (1: through it), and how it ended.
pub struct Encoded {
    pub x: Vec<f64>,
    pub n_cols: usize,
    pub y: Vec<bool>,
    pub key_hash: Vec<u64>,
    pub follow_up: Vec<(f64, Ending)>,
}

/// How a prediction time's follow-up ended within the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The outcome came.
    Outcome,
    /// A competing event came first (death, for dementia): the outcome no longer can.
    Competing,
    /// Neither: observed without either until the time given (censored if within the horizon).
    Neither,
}

impl Ending {
    /// Censored: follow-up that ended at `time` (a share of the horizon) this way stopped within
    /// the horizon without the outcome or a competing event, so it has no binary label.
    pub fn censored(self, time: f64) -> bool {
        self == Ending::Neither && time < 1.0
    }
}

impl Encoded {
    /// Fold 0 by key: the tuning rows networks early-stop on and calibration maps are fitted on.
    pub(super) fn tuning_rows(&self) -> Vec<usize> {
        self.rows(|r| self.fold(r) == 0)
    }

    pub(super) fn rows(&self, pick: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..self.y.len()).filter(|&r| pick(r)).collect()
    }

    pub(super) fn subset(&self, rows: &[usize]) -> (Vec<f64>, Vec<bool>) {
        let x = rows.iter().flat_map(|&r| self.x[r * self.n_cols..(r + 1) * self.n_cols].iter().copied()).collect();
        (x, rows.iter().map(|&r| self.y[r]).collect())
    }

    pub(super) fn columns(&self, rows: &[usize]) -> (Vec<Vec<f64>>, Vec<f64>) {
        let cols = (0..self.n_cols).map(|c| rows.iter().map(|&r| self.x[r * self.n_cols + c]).collect()).collect();
        (cols, rows.iter().map(|&r| f64::from(u8::from(self.y[r]))).collect())
    }

    pub(super) fn fold(&self, r: usize) -> usize {
        (self.key_hash[r] % 5) as usize
    }

    /// Whether row `r` has a binary label: not censored within the horizon (every row of a
    /// table; an event task's censored rows teach only time-to-event models).
    pub(super) fn labelled(&self, r: usize) -> bool {
        self.follow_up.get(r).is_none_or(|&(time, ending)| !ending.censored(time))
    }

    /// `rows` of `columns`, as a data set of their own. With `refold`, patients are dealt into
    /// new folds (by the key hash's next digit in base 5), so cross-validation inside rows that
    /// lack one of this data's folds still has five.
    pub(super) fn select(&self, rows: &[usize], columns: std::ops::Range<usize>, refold: bool) -> Encoded {
        let x =
            rows.iter().flat_map(|&r| self.x[r * self.n_cols..(r + 1) * self.n_cols][columns.clone()].iter().copied());
        Encoded {
            x: x.collect(),
            n_cols: columns.len(),
            y: rows.iter().map(|&r| self.y[r]).collect(),
            key_hash: rows.iter().map(|&r| if refold { self.key_hash[r] / 5 } else { self.key_hash[r] }).collect(),
            follow_up: if self.follow_up.is_empty() {
                Vec::new()
            } else {
                rows.iter().map(|&r| self.follow_up[r]).collect()
            },
        }
    }
}

/// A parameter a learner refused, by name, before any row was read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{learner} parameter `{param}`: {reason}")]
pub struct ParamError {
    pub learner: &'static str,
    pub param: &'static str,
    pub reason: String,
}

impl ParamError {
    pub fn new(learner: &'static str, param: &'static str) -> Self {
        Self { learner, param, reason: String::new() }
    }

    /// `Ok` where `holds`; otherwise this parameter, refused for `reason`.
    pub fn unless(self, holds: bool, reason: &str) -> Result<(), ParamError> {
        if holds { Ok(()) } else { Err(Self { reason: reason.into(), ..self }) }
    }
}

/// The fewest competing events a cause-specific hazard is fitted from.
pub const MIN_COMPETING_EVENTS: usize = 10;

/// Why a fit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("a time-to-event model needs follow-up times: train it on an event task (--meds), not a flat table")]
    NoFollowUp,
    #[error("a GRU reads an event sequence: give some features a `rank` (their step) in the feature spec")]
    NoSequence,
    #[error("every step of the sequence must have the same features (ranks 0..{last} each need one per channel)")]
    UnequalSteps { last: usize },
    #[error(
        "stack: the non-negative logistic regression of the outcome on the members' out-of-fold predictions did not converge"
    )]
    StackWeights,
    #[error(
        "stack: no member's out-of-fold predictions carry information about the outcome (every weight is 0); fit a single model instead"
    )]
    UninformativeStack,
    #[error(
        "hazard: {0} training rows end in a competing event, too few to fit its hazard (at least {MIN_COMPETING_EVENTS}); drop `competing_codes` from the task to censor them instead"
    )]
    TooFewCompetingEvents(usize),
    #[error("logistic regression (linfa): {0}")]
    Linfa(#[from] linfa_logistic::error::Error),
}

/// What every learner fits on: the encoded rows, their folds, and whether fold 0 is kept back.
pub struct FitInput<'a> {
    pub pre: &'a Preprocessor,
    pub data: &'a Encoded,
    /// Fold 0 is kept for a calibration map fitted afterwards, never seen by the fit.
    pub calibrating: bool,
}

impl FitInput<'_> {
    /// Rows the final model is fitted on: every row, or folds 1-4 when calibrating.
    pub(super) fn fitting_rows(&self) -> Vec<usize> {
        self.data.rows(|r| !self.calibrating || self.data.fold(r) != 0)
    }

    /// The folds cross-validation runs over: all five, or 1-4 when fold 0 is kept for calibration.
    pub(super) fn cv_fold_ids(&self) -> Vec<usize> {
        (0..5).filter(|&k| !self.calibrating || k != 0).collect()
    }

    /// Cross-validation over the fitting rows: the number of folds and each row's fold.
    pub(super) fn cv_folds(&self, fitting: &[usize]) -> (usize, Vec<usize>) {
        let folds = fitting.iter().map(|&r| self.data.fold(r));
        if self.calibrating { (4, folds.map(|f| f - 1).collect()) } else { (5, folds.collect()) }
    }
}

/// What a learner made: the estimator, a map of its own from margin to risk (the hazard model's
/// risk by the horizon), the method in words and the typed record of what it chose.
pub struct Learned<S> {
    pub estimator: Estimator,
    pub calibration: Option<Calibration>,
    pub method: String,
    pub selection: S,
}

/// One interface over every algorithm: checked parameters in, an estimator and a typed record of
/// the selection made out. Parameters are checked before any row is read (as linfa's
/// `ParamGuard`), so a bad setting fails in a moment, not after an hour of cross-validation.
pub trait Learner: Sized {
    /// What the learner's search chose, kept in `metrics.json` (as one of
    /// [`super::selection::Choice`]).
    type Selection;

    /// The parameters' rules: refuses any no fit could use, naming it.
    fn validate(&self) -> Result<(), ParamError>;

    /// Fits with parameters [`Learner::check`] accepted.
    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<Self::Selection>, FitError>;

    /// The parameters, checked: what [`Learner::fit_checked`] takes.
    fn check(&self) -> Result<Checked<'_, Self>, ParamError> {
        self.validate()?;
        Ok(Checked(self))
    }

    /// Checks the parameters, then fits.
    fn fit(&self, input: &FitInput<'_>) -> Result<Learned<Self::Selection>, FitError> {
        Self::fit_checked(self.check()?, input)
    }
}

/// Parameters [`Learner::check`] accepted. Only `check` makes one, so no fit runs on parameters
/// that were never checked.
pub struct Checked<'a, P>(&'a P);

impl<P> std::ops::Deref for Checked<'_, P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.0
    }
}
