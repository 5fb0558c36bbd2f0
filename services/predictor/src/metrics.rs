use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use vigil_runtime::Beat;
use vigil_telemetry::Metrics;

/// Labels of a per-RPC counter.
pub(crate) type RpcLabels = [(&'static str, &'static str); 1];

/// What the predictor counts in `/metrics`.
#[derive(Clone, Debug)]
pub struct PredictorMetrics {
    /// Signals scored, by RPC (`predict`, `predict_batch`, `model_infer`).
    pub predictions: Family<RpcLabels, Counter>,
    /// Requests answered with an error, by gRPC code.
    pub errors: Family<RpcLabels, Counter>,
    /// Models swapped in (the first load included).
    pub swaps: Counter,
    /// The registry version number of the model served (0: a model file, or none yet).
    pub serving_version: Gauge,
    /// Model versions that could not be loaded (checksum, format, registry errors).
    pub load_failures: Counter,
    /// Signals the model abstained on (too little of its inputs carried).
    pub abstentions: Counter,
    /// The per-RPC children of `predictions`, looked up once: the family's lookup takes a lock.
    by_rpc: [Counter; 3],
    /// One operation per scoring request, in the heartbeats.
    pub(crate) beat: Beat,
}

/// The RPCs that score signals, in the order of `by_rpc`.
const SCORING_RPCS: [&str; 3] = ["predict", "predict_batch", "model_infer"];

impl PredictorMetrics {
    /// Registers the counters in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let predictions: Family<RpcLabels, Counter> = metrics.register(
            "predictor_predictions",
            "Threat signals scored, by RPC",
            Family::default(),
        );
        let by_rpc = SCORING_RPCS.map(|rpc| predictions.get_or_create(&[("rpc", rpc)]).clone());
        Self {
            predictions,
            by_rpc,
            beat: Beat::detached("predictor"),
            errors: metrics.register(
                "predictor_errors",
                "Requests answered with an error, by gRPC code",
                Family::default(),
            ),
            swaps: metrics.register(
                "predictor_model_swaps",
                "Models swapped in, the first load included",
                Counter::default(),
            ),
            serving_version: metrics.register(
                "predictor_serving_version",
                "Registry version number of the model served (0: a model file, or none yet)",
                Gauge::default(),
            ),
            load_failures: metrics.register(
                "predictor_model_load_failures",
                "Model versions refused (corrupt artifact, checksum or registry error)",
                Counter::default(),
            ),
            abstentions: metrics.register(
                "predictor_abstentions",
                "Signals the model abstained on: they carried less than predictor.min_coverage \
                 of its inputs",
                Counter::default(),
            ),
        }
    }

    /// Records scoring requests in `beat` (the predictor's heartbeats) instead of nowhere.
    pub fn with_beat(mut self, beat: Beat) -> Self {
        self.beat = beat;
        self
    }

    pub(crate) fn scored(&self, rpc: &'static str, rows: usize) {
        match SCORING_RPCS.iter().position(|r| *r == rpc) {
            Some(i) => self.by_rpc[i].inc_by(rows as u64),
            None => self
                .predictions
                .get_or_create(&[("rpc", rpc)])
                .inc_by(rows as u64),
        };
    }

    pub(crate) fn failed(&self, code: &'static str) {
        self.errors.get_or_create(&[("code", code)]).inc();
    }
}
