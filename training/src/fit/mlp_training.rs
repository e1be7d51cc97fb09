//! A multilayer perceptron for tabular features, trained with burn (see [`super::network`]),
//! then exported to Carecast's own [`Mlp`], which serves and explains without burn.

use super::learner::{Checked, FitError, FitInput, Learned, Learner, ParamError};
use super::network::{self, NetworkChoice, Rows, Schedule, Split, Trained};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Tensor, TensorData};
use carecast_models::Estimator;
use carecast_models::mlp::Mlp;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl Learner for MlpParams {
    type Selection = NetworkChoice<MlpParams>;

    fn validate(&self) -> Result<(), ParamError> {
        ParamError::new("mlp", "hidden").unless(self.hidden.iter().all(|&h| h >= 1), "each layer needs a unit")?;
        self.schedule.check("mlp")
    }

    fn fit_checked(params: Checked<'_, Self>, input: &FitInput<'_>) -> Result<Learned<Self::Selection>, FitError> {
        let split = Split::of(input.data);
        let trained = fit(&split, input.data.n_cols, &params);
        Ok(network::learned(trained, Estimator::Mlp, *params))
    }
}

/// Fits on the split's row-major standardised columns, early-stopping on its tuning rows.
fn fit(split: &Split, n_cols: usize, params: &MlpParams) -> Trained<Mlp> {
    let Split { x, y, tune_x, tune_y } = split;
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
    Trained {
        network: Mlp { layers, background: network::column_means(x, n_cols) },
        best_epoch: trained.best_epoch,
        tuning_log_loss: trained.tuning_log_loss,
    }
}
