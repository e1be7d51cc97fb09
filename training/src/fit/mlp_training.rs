//! A multilayer perceptron for tabular features, trained with burn (see [`super::network`]),
//! then exported to Carecast's own [`Mlp`], which serves and explains without burn.

use super::network::{self, Rows, Schedule};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Tensor, TensorData};
use carecast_models::mlp::Mlp;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MlpParams {
    pub hidden: [usize; 2],
    #[serde(flatten)]
    pub schedule: Schedule,
}

impl MlpParams {
    /// Two small hidden layers.
    pub fn new(schedule: Schedule) -> Self {
        Self { hidden: [32, 16], schedule }
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
}

/// What training found: the model and the epoch whose tuning loss was best.
pub struct MlpFit {
    pub model: Mlp,
    pub best_epoch: usize,
    pub tuning_log_loss: f64,
}

/// Fits on row-major `x` (standardised columns) and labels, early-stopping on the tuning rows.
pub fn fit(x: &[f64], y: &[bool], tune_x: &[f64], tune_y: &[bool], n_cols: usize, params: MlpParams) -> MlpFit {
    let device = network::device(&params.schedule);
    let [h1, h2] = params.hidden;
    let initial = Network {
        input: LinearConfig::new(n_cols, h1).init(&device),
        hidden: LinearConfig::new(h1, h2).init(&device),
        output: LinearConfig::new(h2, 1).init(&device),
        relu: Relu::new(),
    };
    let matrix = |x: &[f64], rows: &mut dyn Iterator<Item = usize>| {
        let data: Vec<f32> = rows.flat_map(|r| x[r * n_cols..(r + 1) * n_cols].iter().map(|&v| v as f32)).collect();
        let n = data.len() / n_cols;
        Tensor::<2>::from_data(TensorData::new(data, [n, n_cols]), &device)
    };
    let tuning = matrix(tune_x, &mut (0..tune_y.len()));
    let logits = |net: &Network, rows: Rows<'_>| match rows {
        Rows::Batch(batch) => net.forward(matrix(x, &mut batch.iter().copied())),
        Rows::Tuning => net.forward(tuning.clone()),
    };
    let trained = network::train(initial, logits, y, tune_y, &params.schedule, &device);
    let net = &trained.network;
    let layers =
        vec![network::export_dense(&net.input), network::export_dense(&net.hidden), network::export_dense(&net.output)];
    MlpFit {
        model: Mlp { layers, background: network::column_means(x, n_cols) },
        best_epoch: trained.best_epoch,
        tuning_log_loss: trained.tuning_log_loss,
    }
}
