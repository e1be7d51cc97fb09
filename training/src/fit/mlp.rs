//! A multilayer perceptron for tabular features, trained with burn on its `flex` CPU backend
//! (autodiff, Adam, weight decay, mini-batches, early stopping on the tuning split), then exported
//! to Carecast's own [`Mlp`], which serves and explains without burn.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData, activation};
use crate::rng::Rng;
use carecast_models::mlp::{Dense, Mlp};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MlpParams {
    pub hidden: [usize; 2],
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

impl Default for MlpParams {
    /// Small and strongly regularised: clinical tables have thousands of rows, not millions.
    fn default() -> Self {
        Self { hidden: [32, 16], learning_rate: 1e-3, weight_decay: 1e-3, batch_size: 128, max_epochs: 300, patience: 20, seed: 7, positive_weight: 1.0 }
    }
}

#[derive(Module, Debug)]
struct Network {
    input: Linear,
    hidden: Linear,
    output: Linear,
    relu: Relu,
}

impl Network {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.relu.forward(self.input.forward(x));
        let h = self.relu.forward(self.hidden.forward(h));
        self.output.forward(h)
    }

    /// The trained weights in Carecast's representation (burn stores `[inputs, outputs]`).
    fn export(&self, background: Vec<f64>) -> Mlp {
        let dense = |l: &Linear| {
            let [inputs, outputs] = l.weight.val().dims();
            let w: Vec<f32> = l.weight.val().into_data().try_to_vec::<f32>().expect("f32 weights");
            let b: Vec<f32> = l.bias.as_ref().expect("layers have a bias").val().into_data().try_to_vec::<f32>().expect("f32 bias");
            let mut weights = vec![0.0; inputs * outputs];
            for i in 0..inputs {
                for o in 0..outputs {
                    weights[o * inputs + i] = f64::from(w[i * outputs + o]);
                }
            }
            Dense { inputs, outputs, weights, bias: b.into_iter().map(f64::from).collect() }
        };
        Mlp { layers: vec![dense(&self.input), dense(&self.hidden), dense(&self.output)], background }
    }
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

/// What training found: the model and the epoch whose tuning loss was best.
pub struct MlpFit {
    pub model: Mlp,
    pub best_epoch: usize,
    pub tuning_log_loss: f64,
}

/// Fits on row-major `x` (standardised columns) and labels, early-stopping on the tuning rows.
pub fn fit(x: &[f64], y: &[bool], tune_x: &[f64], tune_y: &[bool], n_cols: usize, params: MlpParams) -> MlpFit {
    let device = Device::flex().autodiff();
    device.seed(params.seed);
    let [h1, h2] = params.hidden;
    let mut network = Network {
        input: LinearConfig::new(n_cols, h1).init(&device),
        hidden: LinearConfig::new(h1, h2).init(&device),
        output: LinearConfig::new(h2, 1).init(&device),
        relu: Relu::new(),
    };
    let mut optimiser = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(params.weight_decay))).init();
    let matrix = |x: &[f64], rows: &[usize]| {
        let data: Vec<f32> = rows.iter().flat_map(|&r| x[r * n_cols..(r + 1) * n_cols].iter().map(|&v| v as f32)).collect();
        Tensor::<2>::from_data(TensorData::new(data, [rows.len(), n_cols]), &device)
    };
    let column = |v: Vec<f32>| {
        let n = v.len();
        Tensor::<2>::from_data(TensorData::new(v, [n, 1]), &device)
    };
    let weight = |b: bool| if b { params.positive_weight as f32 } else { 1.0 };
    let tune_rows: Vec<usize> = (0..tune_y.len()).collect();
    let (tx, ty) = (matrix(tune_x, &tune_rows), column(tune_y.iter().map(|&b| f32::from(u8::from(b))).collect()));
    let tw = column(tune_y.iter().map(|&b| weight(b)).collect());

    let mut order: Vec<usize> = (0..y.len()).collect();
    let mut rng = Rng(params.seed);
    let (mut best, mut best_epoch, mut best_model) = (f64::INFINITY, 0, None);
    for epoch in 0..params.max_epochs {
        shuffle(&mut order, &mut rng);
        for batch in order.chunks(params.batch_size) {
            let xb = matrix(x, batch);
            let yb = column(batch.iter().map(|&r| f32::from(u8::from(y[r]))).collect());
            let wb = column(batch.iter().map(|&r| weight(y[r])).collect());
            let l = loss(network.forward(xb), yb, wb);
            let grads = GradientsParams::from_grads(l.backward(), &network);
            network = optimiser.step(params.learning_rate, network, grads);
        }
        let tuning = f64::from(loss(network.forward(tx.clone()), ty.clone(), tw.clone()).into_scalar::<f32>());
        if tuning < best - 1e-6 {
            (best, best_epoch, best_model) = (tuning, epoch + 1, Some(network.clone()));
        } else if epoch + 1 - best_epoch >= params.patience {
            break;
        }
    }
    let background: Vec<f64> = (0..n_cols).map(|c| (0..y.len()).map(|r| x[r * n_cols + c]).sum::<f64>() / y.len() as f64).collect();
    let network = best_model.unwrap_or(network);
    MlpFit { model: network.export(background), best_epoch, tuning_log_loss: best }
}
