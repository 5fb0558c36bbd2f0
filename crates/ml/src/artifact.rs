//! The model artifact: one versioned, checksummed file holding the feature spec, the three
//! models, the ensemble weights and the metrics. Written by `vigil train`, stored as bytes by
//! the trainer's registry, loaded by the predictor.
//!
//! Layout: magic `VIGILML\0` (8 bytes) | format version (u32 LE) | payload length (u64 LE) |
//! SHA-256 of the payload (32 bytes) | payload (JSON).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_domain::{
    ModelMetrics, ModelType, ModelVersion, PredictionResult, RiskThresholds, ThreatSignal,
};

use crate::ensemble::{Ensemble, MEMBERS, Score};
use crate::error::{Error, Result};
use crate::holdout::Holdout;

/// First bytes of every artifact.
pub const ARTIFACT_MAGIC: [u8; 8] = *b"VIGILML\0";
/// The format version this build writes and reads. Version 2 tells missing inputs from zeros;
/// version 1 models read every absent input as 0 (every benign sensor signal looked like a SYN
/// flood to them), so they are refused and must be trained again.
pub const ARTIFACT_FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 32;
/// How many features a prediction reports as "what mattered".
const EXPLAINED_FEATURES: usize = 5;

/// Who, when and how a model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMetadata {
    /// Content-derived id (`ens-` + 16 hex digits of the models' hash): same models, same id.
    pub model_version_id: String,
    pub trained_at: DateTime<Utc>,
    pub training_samples: u64,
    pub feature_names: Vec<String>,
    /// The full training configuration.
    pub hyperparameters: serde_json::Value,
    /// Version of vigil-ml that trained it.
    pub library_version: String,
    /// Where the training data came from (a file name, `registry`, ...).
    pub data_source: String,
    /// The rows held out to score the model (`None`: written before artifacts recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<Holdout>,
}

/// A trained ensemble with its metadata and test metrics: what the predictor serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub metadata: ArtifactMetadata,
    pub ensemble: Ensemble,
    /// Metrics on the held-out test split, per member and for the ensemble.
    pub metrics: BTreeMap<ModelType, ModelMetrics>,
}

impl ModelArtifact {
    /// Serialises the artifact (header, checksum, payload).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload = serde_json::to_vec(self)?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&ARTIFACT_MAGIC);
        out.extend_from_slice(&ARTIFACT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Reads an artifact, refusing other format versions, truncated or altered files, and
    /// models that do not fit together.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < ARTIFACT_MAGIC.len() || bytes[..8] != ARTIFACT_MAGIC {
            return Err(Error::NotAnArtifact);
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::CorruptArtifact(format!(
                "header is truncated ({} bytes)",
                bytes.len()
            )));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4-byte slice"));
        if version != ARTIFACT_FORMAT_VERSION {
            return Err(Error::UnsupportedFormatVersion {
                found: version,
                expected: ARTIFACT_FORMAT_VERSION,
            });
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8-byte slice"));
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != len {
            return Err(Error::CorruptArtifact(format!(
                "payload is {} bytes, header says {len}",
                payload.len()
            )));
        }
        if Sha256::digest(payload).as_slice() != &bytes[20..52] {
            return Err(Error::CorruptArtifact("checksum mismatch".to_string()));
        }
        let artifact: ModelArtifact = serde_json::from_slice(payload)
            .map_err(|e| Error::CorruptArtifact(format!("payload: {e}")))?;
        artifact.ensemble.check()?;
        Ok(artifact)
    }

    /// Content-derived id of an ensemble.
    pub fn version_id_of(ensemble: &Ensemble) -> Result<String> {
        let digest = Sha256::digest(serde_json::to_vec(ensemble)?);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("ens-{hex}"))
    }

    /// Scores one signal: risk score 0-10, level by `thresholds`, confidence, what mattered,
    /// coverage and domain, each member's probability. Never abstains by itself: see
    /// [`PredictionResult::abstain_below`].
    pub fn predict(
        &self,
        signal: &ThreatSignal,
        thresholds: &RiskThresholds,
    ) -> Result<PredictionResult> {
        let started = Instant::now();
        let x = self.ensemble.spec.transform(signal)?;
        let score = self.ensemble.score_features(signal, &x);
        Ok(self.result(signal, &x, score, thresholds, started))
    }

    /// Scores many signals; each gets its own result, so one bad signal does not sink the batch.
    pub fn predict_batch(
        &self,
        signals: &[ThreatSignal],
        thresholds: &RiskThresholds,
    ) -> Vec<Result<PredictionResult>> {
        let mut scratch = Vec::new();
        let mut x = Vec::new();
        signals
            .iter()
            .map(|signal| {
                let started = Instant::now();
                self.ensemble
                    .spec
                    .transform_into(signal, &mut scratch, &mut x)?;
                let score = self.ensemble.score_features(signal, &x);
                Ok(self.result(signal, &x, score, thresholds, started))
            })
            .collect()
    }

    /// The ensemble's score without building a [`PredictionResult`] (no clock, no names).
    pub fn score(&self, signal: &ThreatSignal) -> Result<Score> {
        self.ensemble.score(signal)
    }

    fn result(
        &self,
        signal: &ThreatSignal,
        x: &[f32],
        score: Score,
        thresholds: &RiskThresholds,
        started: Instant,
    ) -> PredictionResult {
        let coverage = self.ensemble.spec.coverage(x);
        PredictionResult {
            threat_id: signal.id.clone(),
            risk_score: score.risk_score,
            risk_level: thresholds.level(score.risk_score),
            confidence: score.confidence,
            model_version_id: self.metadata.model_version_id.clone(),
            features_used: self.ensemble.explain(x, EXPLAINED_FEATURES),
            prediction_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            created_at: Utc::now(),
            coverage: coverage.share(),
            missing_inputs: coverage.missing,
            in_domain: score.in_domain,
            probability: score.probability.clamp(0.0, 1.0),
            decision_threshold: self.ensemble.decision_threshold,
            member_probabilities: MEMBERS.iter().copied().zip(score.members).collect(),
            novelty: score.novelty.clamp(0.0, 1.0),
            abstention: None,
        }
    }

    /// One registry entry per member and one for the ensemble, for the model registry.
    pub fn model_versions(&self, version: i32) -> Vec<ModelVersion> {
        ModelType::ALL
            .iter()
            .map(|&model_type| ModelVersion {
                id: if model_type == ModelType::Ensemble {
                    self.metadata.model_version_id.clone()
                } else {
                    format!("{}-{}", self.metadata.model_version_id, model_type.as_str())
                },
                model_type,
                version,
                trained_at: self.metadata.trained_at,
                metrics: self.metrics.get(&model_type).copied().unwrap_or_default(),
                hyperparameters: self.metadata.hyperparameters.clone(),
                training_samples: self.metadata.training_samples,
                features_used: self.metadata.feature_names.clone(),
                is_active: false,
                is_production: false,
            })
            .collect()
    }
}
