//! The neural network: a multi-layer perceptron trained with burn on its CPU (ndarray)
//! backend, with early stopping on the validation split. Serving uses [`Mlp`], a plain-Rust
//! forward pass over the trained weights (fast, `Send + Sync`, no backend state), tested
//! against burn's own output.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::{log_sigmoid, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Progress;
use crate::error::{Error, Result};
use crate::features::Matrix;

type TrainBackend = Autodiff<NdArray<f32>>;
type InferBackend = NdArray<f32>;

/// MLP hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    pub hidden: Vec<usize>,
    pub learning_rate: f64,
    /// L2 penalty applied by Adam.
    pub weight_decay: f64,
    pub dropout: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub seed: u64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 32],
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            dropout: 0.0,
            batch_size: 512,
            max_epochs: 30,
            patience: 4,
            seed: 42,
        }
    }
}

impl MlpConfig {
    fn validate(&self) -> Result<()> {
        let ok = !self.hidden.is_empty()
            && self.hidden.iter().all(|&h| h > 0)
            && self.learning_rate > 0.0
            && self.weight_decay >= 0.0
            && (0.0..1.0).contains(&self.dropout)
            && self.batch_size > 0
            && self.max_epochs > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!("neural network: {self:?}")))
        }
    }
}

#[derive(Module, Debug)]
struct Net<B: Backend> {
    layers: Vec<Linear<B>>,
    dropout: Dropout,
}

impl<B: Backend> Net<B> {
    fn new(inputs: usize, config: &MlpConfig, device: &B::Device) -> Self {
        let mut layers = Vec::new();
        let mut width = inputs;
        for &h in &config.hidden {
            layers.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        layers.push(LinearConfig::new(width, 1).init(device));
        Self {
            layers,
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// Logits, shape `[rows, 1]`.
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.dropout.forward(relu(x));
            }
        }
        x
    }
}

/// One dense layer: `y = x W + b`, `weights` row-major `[inputs][outputs]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The trained network as plain weights: ReLU between layers, sigmoid at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub layers: Vec<Dense>,
    /// Epochs trained and the epoch whose weights were kept.
    pub epochs_trained: usize,
    pub best_epoch: usize,
}

impl Mlp {
    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.inputs)
    }

    /// The logit for one row.
    pub fn logit(&self, x: &[f32]) -> f32 {
        let mut current: Vec<f32> = x.to_vec();
        let mut next: Vec<f32> = Vec::new();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            next.clear();
            next.extend_from_slice(&layer.bias);
            for (input, &xi) in current.iter().enumerate() {
                if xi == 0.0 {
                    continue;
                }
                let row = &layer.weights[input * layer.outputs..(input + 1) * layer.outputs];
                for (acc, w) in next.iter_mut().zip(row) {
                    *acc += xi * w;
                }
            }
            if i < last {
                next.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            std::mem::swap(&mut current, &mut next);
        }
        current[0]
    }

    /// Probability that `x` is a threat.
    pub fn predict_proba(&self, x: &[f32]) -> f64 {
        let z = f64::from(self.logit(x));
        1.0 / (1.0 + (-z).exp())
    }

    /// Checks layer shapes, so a tampered artifact cannot make prediction index out of bounds.
    pub fn check(&self, n_features: usize) -> Result<()> {
        let mut width = n_features;
        for layer in &self.layers {
            if layer.inputs != width
                || layer.weights.len() != layer.inputs * layer.outputs
                || layer.bias.len() != layer.outputs
            {
                return Err(Error::CorruptArtifact(
                    "neural network layer shapes are inconsistent".to_string(),
                ));
            }
            width = layer.outputs;
        }
        if self.layers.is_empty() || width != 1 {
            return Err(Error::CorruptArtifact(
                "neural network must end in one output".to_string(),
            ));
        }
        Ok(())
    }

    fn from_net(net: &Net<InferBackend>, epochs_trained: usize, best_epoch: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(net.layers.len());
        for layer in &net.layers {
            let w = layer.weight.val();
            let [inputs, outputs] = w.dims();
            let weights = w
                .into_data()
                .into_vec::<f32>()
                .map_err(|e| Error::Training(format!("reading weights: {e:?}")))?;
            let bias = match &layer.bias {
                Some(b) => b
                    .val()
                    .into_data()
                    .into_vec::<f32>()
                    .map_err(|e| Error::Training(format!("reading bias: {e:?}")))?,
                None => vec![0.0; outputs],
            };
            layers.push(Dense {
                inputs,
                outputs,
                weights,
                bias,
            });
        }
        Ok(Self {
            layers,
            epochs_trained,
            best_epoch,
        })
    }
}

fn tensor<B: Backend>(x: &Matrix, rows: &[usize], device: &B::Device) -> Tensor<B, 2> {
    let mut data = Vec::with_capacity(rows.len() * x.cols);
    for &r in rows {
        data.extend_from_slice(x.row(r));
    }
    Tensor::from_data(TensorData::new(data, [rows.len(), x.cols]), device)
}

fn column<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 2> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n, 1]), device)
}

/// Weighted mean log loss of logits `z` against labels.
fn log_loss(z: &[f32], y: &[bool]) -> f64 {
    let total: f64 = z
        .iter()
        .zip(y)
        .map(|(&z, &y)| {
            let z = f64::from(z);
            // -log(sigmoid(z)) = softplus(-z), computed stably.
            let softplus = |t: f64| t.max(0.0) + (-t.abs()).exp().ln_1p();
            if y { softplus(-z) } else { softplus(z) }
        })
        .sum();
    total / y.len().max(1) as f64
}

fn net_logits(net: &Net<InferBackend>, x: &Matrix) -> Result<Vec<f32>> {
    let device = Default::default();
    let mut out = Vec::with_capacity(x.rows);
    let chunk = 4096;
    let all: Vec<usize> = (0..x.rows).collect();
    for rows in all.chunks(chunk) {
        let logits = net.forward(tensor::<InferBackend>(x, rows, &device));
        out.extend(
            logits
                .into_data()
                .into_vec::<f32>()
                .map_err(|e| Error::Training(format!("reading logits: {e:?}")))?,
        );
    }
    Ok(out)
}

/// The trained network and, for tests, burn's logits of the kept weights on the validation set.
pub(crate) struct MlpTraining {
    pub mlp: Mlp,
    /// Only filled in tests, where it checks the plain forward pass.
    #[cfg_attr(not(test), allow(dead_code))]
    pub burn_validation_logits: Vec<f32>,
}

/// Trains the MLP on `x`/`y`/`w`, stopping early on the validation loss.
pub fn train_mlp(
    x: &Matrix,
    y: &[bool],
    w: &[f32],
    val_x: &Matrix,
    val_y: &[bool],
    config: &MlpConfig,
    progress: &dyn Progress,
) -> Result<Mlp> {
    Ok(train_mlp_inner(x, y, w, val_x, val_y, config, progress)?.mlp)
}

pub(crate) fn train_mlp_inner(
    x: &Matrix,
    y: &[bool],
    w: &[f32],
    val_x: &Matrix,
    val_y: &[bool],
    config: &MlpConfig,
    progress: &dyn Progress,
) -> Result<MlpTraining> {
    config.validate()?;
    if x.rows == 0 || y.len() != x.rows || w.len() != x.rows {
        return Err(Error::Training(
            "neural network needs one label and one weight per row".to_string(),
        ));
    }
    if val_x.rows == 0 || val_x.cols != x.cols || val_y.len() != val_x.rows {
        return Err(Error::Training(
            "neural network needs a non-empty validation split for early stopping".to_string(),
        ));
    }
    let device = Default::default();
    TrainBackend::seed(&device, config.seed);
    let mut net: Net<TrainBackend> = Net::new(x.cols, config, &device);
    let mut optimizer = AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(config.weight_decay as f32)))
        .init::<TrainBackend, Net<TrainBackend>>();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..x.rows).collect();
    let mut best: Option<(f64, Net<InferBackend>, usize)> = None;
    let mut epochs = 0;
    progress.stage("neural network", config.max_epochs as u64);
    for epoch in 0..config.max_epochs {
        epochs = epoch + 1;
        order.shuffle(&mut rng);
        for batch in order.chunks(config.batch_size) {
            let inputs = tensor::<TrainBackend>(x, batch, &device);
            let targets = column::<TrainBackend>(
                batch.iter().map(|&r| f32::from(u8::from(y[r]))).collect(),
                &device,
            );
            let weights = column::<TrainBackend>(batch.iter().map(|&r| w[r]).collect(), &device);
            let logits = net.forward(inputs);
            // Weighted binary cross-entropy on logits:
            // -(t * log σ(z) + (1 - t) * log σ(-z)).
            let loss = (targets.clone() * log_sigmoid(logits.clone())
                + (targets.neg() + 1.0) * log_sigmoid(logits.neg()))
            .neg()
                * weights;
            let loss = loss.mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(config.learning_rate, net, grads);
        }
        let valid = net.valid();
        let val_loss = log_loss(&net_logits(&valid, val_x)?, val_y);
        progress.advance("neural network", 1);
        if !val_loss.is_finite() {
            return Err(Error::Training(
                "neural network diverged (validation loss is not finite)".to_string(),
            ));
        }
        let improved = best.as_ref().is_none_or(|(b, _, _)| val_loss < b - 1e-5);
        if improved {
            best = Some((val_loss, valid, epoch));
        } else if best
            .as_ref()
            .is_some_and(|(_, _, e)| epoch - e >= config.patience)
        {
            break;
        }
    }
    progress.finish_stage("neural network");
    let (_, best_net, best_epoch) =
        best.ok_or_else(|| Error::Training("neural network trained no epoch".to_string()))?;
    let mlp = Mlp::from_net(&best_net, epochs, best_epoch + 1)?;
    let burn_validation_logits = if cfg!(test) {
        net_logits(&best_net, val_x)?
    } else {
        Vec::new()
    };
    Ok(MlpTraining {
        mlp,
        burn_validation_logits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use rand::Rng;

    fn data(n: usize, seed: u64) -> (Matrix, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = Matrix::zeros(n, 5);
        let mut y = Vec::new();
        for i in 0..n {
            for c in 0..5 {
                m.data[i * 5 + c] = rng.gen_range(-1.5..1.5);
            }
            let r = m.row(i);
            y.push(r[0] * r[0] + r[1] * r[1] < 1.0);
        }
        (m, y)
    }

    #[test]
    fn plain_forward_matches_burn_and_the_network_learns() {
        let (x, y) = data(3000, 1);
        let (vx, vy) = data(600, 2);
        let w = vec![1.0; x.rows];
        let config = MlpConfig {
            max_epochs: 25,
            ..MlpConfig::default()
        };
        let trained = train_mlp_inner(&x, &y, &w, &vx, &vy, &config, &NoProgress).unwrap();
        trained.mlp.check(5).unwrap();
        assert_eq!(trained.burn_validation_logits.len(), vx.rows);
        let mut max_diff = 0.0f32;
        let mut correct = 0;
        for (i, (&label, &burn_logit)) in vy.iter().zip(&trained.burn_validation_logits).enumerate()
        {
            let ours = trained.mlp.logit(vx.row(i));
            max_diff = max_diff.max((ours - burn_logit).abs());
            if (trained.mlp.predict_proba(vx.row(i)) >= 0.5) == label {
                correct += 1;
            }
        }
        assert!(
            max_diff < 1e-4,
            "plain forward differs from burn by {max_diff}"
        );
        assert!(correct > 540, "accuracy {correct}/600");
        assert!(trained.mlp.best_epoch <= trained.mlp.epochs_trained);
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let (x, y) = data(50, 1);
        let w = vec![1.0; 50];
        let empty = Matrix::zeros(0, 5);
        let err = train_mlp(&x, &y, &w, &empty, &[], &MlpConfig::default(), &NoProgress);
        assert!(err.is_err());
        let mlp = Mlp {
            layers: vec![Dense {
                inputs: 5,
                outputs: 1,
                weights: vec![0.0; 4],
                bias: vec![0.0],
            }],
            epochs_trained: 1,
            best_epoch: 1,
        };
        assert!(mlp.check(5).is_err());
    }
}
