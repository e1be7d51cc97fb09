//! What the neural models (the MLP and the GRU) share in training with burn on its `flex` CPU
//! backend: seeded mini-batch Adam with weight decay on a weighted log-loss, early stopping on the
//! tuning rows, and export of burn's dense layers to Carecast's own, which serve without burn.

use super::learner::{Encoded, Learned, ParamError};
use crate::rng::Rng;
use burn::module::Module;
use burn::nn::Linear;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData, activation};
use carecast_models::Estimator;
use carecast_models::mlp::Dense;
use serde::{Deserialize, Serialize};

/// How a network is trained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub learning_rate: f64,
    pub weight_decay: f32,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without improvement of the tuning log-loss.
    pub patience: usize,
    pub seed: u64,
    /// Weight of each positive row relative to a negative one (1: unweighted).
    pub positive_weight: f64,
}

impl Default for Schedule {
    /// Small steps and strong regularisation: clinical tables have thousands of rows, not millions.
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            weight_decay: 1e-3,
            batch_size: 128,
            max_epochs: 300,
            patience: 20,
            seed: 7,
            positive_weight: 1.0,
        }
    }
}

impl Schedule {
    /// The default schedule, with positive rows weighted by `positive_weight`.
    pub fn weighted(positive_weight: f64) -> Self {
        Self { positive_weight, ..Self::default() }
    }

    /// Refuses a schedule no training could follow; `learner` names the network in the error.
    pub fn check(&self, learner: &'static str) -> Result<(), ParamError> {
        let name = |param| ParamError::new(learner, param);
        name("learning_rate")
            .unless(self.learning_rate.is_finite() && self.learning_rate > 0.0, "must be a positive number")?;
        name("weight_decay")
            .unless(self.weight_decay.is_finite() && self.weight_decay >= 0.0, "must be a number >= 0")?;
        name("batch_size").unless(self.batch_size >= 1, "must be at least 1")?;
        name("max_epochs").unless(self.max_epochs >= 1, "must be at least 1")?;
        name("patience").unless(self.patience >= 1, "must be at least 1")?;
        name("positive_weight")
            .unless(self.positive_weight.is_finite() && self.positive_weight > 0.0, "must be a positive number")
    }
}

/// The rows every network learns from: fold 0 (by key) for early stopping, the others to fit.
pub(super) struct Split {
    pub x: Vec<f64>,
    pub y: Vec<bool>,
    pub tune_x: Vec<f64>,
    pub tune_y: Vec<bool>,
}

impl Split {
    pub fn of(data: &Encoded) -> Self {
        let (x, y) = data.subset(&data.rows(|r| data.fold(r) != 0));
        let (tune_x, tune_y) = data.subset(&data.tuning_rows());
        Self { x, y, tune_x, tune_y }
    }
}

/// A trained network as a learner's result, with the record of its early stopping.
pub(super) fn learned<M, P>(
    trained: Trained<M>,
    estimator: impl FnOnce(M) -> Estimator,
    params: P,
) -> Learned<NetworkChoice<P>> {
    Learned {
        estimator: estimator(trained.network),
        calibration: None,
        method: "early stopping on a 20% tuning split of the training rows (by key); the network fitted on the other 80% is kept".into(),
        selection: NetworkChoice { best_epoch: trained.best_epoch, tuning_log_loss: trained.tuning_log_loss, params },
    }
}

/// Which rows a network is asked to score: a training batch, or all the tuning rows.
pub enum Rows<'a> {
    Batch(&'a [usize]),
    Tuning,
}

/// The network whose tuning log-loss was lowest, and when.
pub struct Trained<M> {
    pub network: M,
    pub best_epoch: usize,
    pub tuning_log_loss: f64,
}

/// A device for training, seeded so that the same command gives the same network.
pub fn device(schedule: &Schedule) -> Device {
    let device = Device::flex().autodiff();
    device.seed(schedule.seed);
    device
}

/// A `[rows, 1]` column on the device.
pub fn column(values: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = values.len();
    Tensor::<2>::from_data(TensorData::new(values, [n, 1]), device)
}

/// Weighted binary cross-entropy on logits, in its numerically stable form.
fn loss(z: Tensor<2>, y: Tensor<2>, w: Tensor<2>) -> Tensor<1> {
    let per_row = z.clone().clamp_min(0.0) - z.clone() * y + activation::softplus(-z.abs(), 1.0);
    (per_row * w.clone()).sum() / w.sum()
}

/// A reproducible shuffle (Fisher-Yates), independent of thread count.
fn shuffle(order: &mut [usize], rng: &mut Rng) {
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Trains `network` on labels `y`, early-stopping on `tune_y`; `logits` scores rows.
pub fn train<M: Module + Clone>(
    mut network: M,
    logits: impl Fn(&M, Rows<'_>) -> Tensor<2>,
    y: &[bool],
    tune_y: &[bool],
    schedule: &Schedule,
    device: &Device,
) -> Trained<M> {
    let mut optimiser = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(schedule.weight_decay))).init();
    let weight = |b: bool| if b { schedule.positive_weight as f32 } else { 1.0 };
    let label = |b: bool| f32::from(u8::from(b));
    let ty = column(tune_y.iter().map(|&b| label(b)).collect(), device);
    let tw = column(tune_y.iter().map(|&b| weight(b)).collect(), device);
    let mut order: Vec<usize> = (0..y.len()).collect();
    let mut rng = Rng(schedule.seed);
    let (mut best, mut best_epoch, mut best_network) = (f64::INFINITY, 0, None);
    for epoch in 0..schedule.max_epochs {
        shuffle(&mut order, &mut rng);
        for batch in order.chunks(schedule.batch_size) {
            let yb = column(batch.iter().map(|&r| label(y[r])).collect(), device);
            let wb = column(batch.iter().map(|&r| weight(y[r])).collect(), device);
            let l = loss(logits(&network, Rows::Batch(batch)), yb, wb);
            let grads = GradientsParams::from_grads(l.backward(), &network);
            network = optimiser.step(schedule.learning_rate, network, grads);
        }
        let tuning = f64::from(loss(logits(&network, Rows::Tuning), ty.clone(), tw.clone()).into_scalar::<f32>());
        if tuning < best - 1e-6 {
            (best, best_epoch, best_network) = (tuning, epoch + 1, Some(network.clone()));
        } else if epoch + 1 - best_epoch >= schedule.patience {
            break;
        }
    }
    Trained { network: best_network.unwrap_or(network), best_epoch, tuning_log_loss: best }
}

/// A burn dense layer in Carecast's representation (burn stores weights `[inputs, outputs]`).
pub fn export_dense(l: &Linear) -> Dense {
    let [inputs, outputs] = l.weight.val().dims();
    let w: Vec<f32> = l.weight.val().into_data().try_to_vec::<f32>().expect("f32 weights");
    let b: Vec<f32> =
        l.bias.as_ref().expect("layers have a bias").val().into_data().try_to_vec::<f32>().expect("f32 bias");
    let mut weights = vec![0.0; inputs * outputs];
    for i in 0..inputs {
        for o in 0..outputs {
            weights[o * inputs + i] = f64::from(w[i * outputs + o]);
        }
    }
    Dense { inputs, outputs, weights, bias: b.into_iter().map(f64::from).collect() }
}

/// Per column, the mean over row-major rows: the background of explanations.
pub fn column_means(x: &[f64], n_cols: usize) -> Vec<f64> {
    let rows = x.len() / n_cols.max(1);
    (0..n_cols).map(|c| x.iter().skip(c).step_by(n_cols).sum::<f64>() / rows as f64).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkChoice<P> {
    pub best_epoch: usize,
    pub tuning_log_loss: f64,
    pub params: P,
}
