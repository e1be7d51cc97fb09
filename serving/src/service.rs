//! The `carecast.v1` gRPC services: scoring with explanations, and model metadata.

use crate::auth::{Authenticator, Role};
use crate::fhir_server::FhirServers;
use crate::metrics;
use crate::store::{ModelStore, StoreError};
use carecast_audit::{Announced, AuditLog, AuditRecord, SHADOW_CALLER};
use carecast_models::deid::PseudonymKey;
use carecast_models::explain::Ranking;
use carecast_models::registry::RegistryError;
use carecast_models::{ModelPackage, Score, Value, Workspace, deid};
use carecast_proto::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Shared by both services.
pub struct AppState {
    pub store: ModelStore,
    pub audit: AuditLog,
    /// Who may call; `None` only in the explicit local demo mode.
    pub auth: Option<Authenticator>,
    /// The trust's key that turns EHR patient ids (CDS Hooks) into the audit's pseudonyms.
    pub pseudonyms: PseudonymKey,
    /// The EHR FHIR servers CDS Hooks calls may be completed from; none unless configured.
    pub fhir_servers: Option<FhirServers>,
    /// Where planners' population runs are published, listed at `/population`; none unless configured.
    pub population: Option<std::path::PathBuf>,
    /// Live input and score drift, counted from every score computed.
    pub drift: Arc<crate::drift::LiveDrift>,
    /// Set once the server is told to stop: open streams end instead of reading on.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

/// A pseudonym key drawn at random, for a demo or a test: its pseudonyms cannot be linked across
/// restarts, so a real server is given the trust's key instead.
pub fn ephemeral_pseudonym_key() -> PseudonymKey {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; PseudonymKey::MIN_BYTES];
    ring::rand::SystemRandom::new().fill(&mut key).expect("the system's random source");
    PseudonymKey::new(key).expect("long enough")
}

impl AppState {
    pub fn new(store: ModelStore, audit: AuditLog, auth: Option<Authenticator>, pseudonyms: PseudonymKey) -> Self {
        Self {
            drift: Arc::new(crate::drift::LiveDrift::new(store.registry().clone())),
            store,
            audit,
            auth,
            pseudonyms,
            fhir_servers: None,
            population: None,
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// CDS Hooks calls without prefetch are completed from these FHIR servers.
    pub fn with_fhir_servers(self, servers: FhirServers) -> Self {
        Self { fhir_servers: Some(servers).filter(|s| !s.is_empty()), ..self }
    }

    /// Serves the population runs published in `dir` to planners (`/population`).
    pub fn with_population(self, dir: std::path::PathBuf) -> Self {
        Self { population: Some(dir), ..self }
    }

    /// Commits scores to the audit trail, then counts them in the metrics: the one way every
    /// channel (gRPC, CDS Hooks) records what it is about to return (and what a shadow version
    /// scored beside it). Until this returns `Ok`, none of the scores may be returned.
    pub async fn commit(&self, announced: Announced<'_>, records: &[AuditRecord<'_>]) -> Result<(), Unaudited> {
        announced.record(records).await.map_err(|e| {
            tracing::error!(error = %e, "audit write failed; scores withheld");
            Unaudited
        })?;
        for r in records.iter().filter(|r| !r.caller.starts_with(SHADOW_CALLER)) {
            metrics::scored(r.model, r.model_version, r.risk_band);
        }
        Ok(())
    }

    /// Scores a request with the version of `served`'s model in shadow, if one is set and is
    /// not `served` itself, from the row `row_of` builds for that version's package (its own
    /// inputs). Its agreement with `score` is counted in the metrics; a shadow that cannot
    /// score the request is logged and counted, never the caller's error, and its result is
    /// never returned.
    pub fn shadow<'a>(
        &self,
        served: &ModelPackage,
        score: &Score,
        row_of: impl FnOnce(&ModelPackage) -> Result<Vec<Value<'a>>, String>,
        ws: &mut Workspace,
    ) -> Option<ShadowScore> {
        let shadow = self.store.shadow(&served.manifest.name)?;
        let (model, version, candidate) = (&served.manifest.name, &served.manifest.version, &shadow.manifest.version);
        if candidate == version {
            return None;
        }
        match row_of(&shadow).and_then(|row| shadow.scorer.score(&row, ws).map_err(|e| e.to_string())) {
            Ok(s) => {
                metrics::shadow(model, version, candidate, score, &s);
                Some(ShadowScore { version: candidate.clone(), probability: s.probability, band: s.band.as_str() })
            }
            Err(reason) => {
                tracing::warn!(model, shadow = %candidate, reason, "shadow version could not score a request");
                metrics::shadow_refused(model, version, candidate);
                None
            }
        }
    }

    /// The caller of a request needing `role`: the token's subject, or in demo mode the peer
    /// address. Refusals are counted in the metrics.
    pub fn caller<T>(&self, request: &Request<T>, rpc: &'static str, role: Role) -> Result<String, Status> {
        let Some(auth) = &self.auth else {
            return Ok(request.remote_addr().map_or_else(|| "unknown".to_string(), |a| a.to_string()));
        };
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        auth.check(header, role).map_err(|refused| {
            let status = Status::from(refused);
            metrics::refused(rpc, status.code());
            status
        })
    }
}

/// A shadow version's score of a request: audited, counted, never returned.
#[derive(Debug, Clone)]
pub struct ShadowScore {
    pub version: String,
    pub probability: f64,
    pub band: &'static str,
}

/// Scores that could not be committed to the audit trail, and so must not be returned (the
/// server's log has the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unaudited;

/// A store error as the caller sees it: what to do, never server paths, checksums or which files
/// exist (the server's log has those), and names echoed short.
pub(crate) fn store_status(e: StoreError) -> Status {
    let short =
        |text: String| if text.chars().count() > 160 { text.chars().take(159).chain(['…']).collect() } else { text };
    match &e {
        StoreError::Registry(RegistryError::BadName(_)) => Status::invalid_argument(short(e.to_string())),
        StoreError::Registry(
            RegistryError::UnknownModel(_)
            | RegistryError::UnknownVersion { .. }
            | RegistryError::NoCurrent(_)
            | RegistryError::NothingToRollBack(_),
        ) => Status::not_found(short(e.to_string())),
        // Which gates failed, and how to go on: the caller needs it all, so it is not cut short.
        StoreError::Registry(RegistryError::GatesNotPassed { .. }) => Status::failed_precondition(e.to_string()),
        StoreError::Registry(RegistryError::Io { .. }) => {
            tracing::error!(error = %e, "model registry I/O failed");
            Status::internal("model registry unavailable")
        }
        StoreError::Unloadable { model, version, .. } => Status::failed_precondition(short(format!(
            "model `{model}` version `{version}` cannot be served: its package failed verification (corrupt or altered); the server's log has the reason"
        ))),
    }
}

/// How a request asks for its explanation: `max_contributions` features and factors, 0 for all.
fn ranking(req: &pb::ScoreRequest) -> Ranking {
    let k = match req.max_contributions {
        0 => usize::MAX,
        k => k as usize,
    };
    Ranking { features: k, factors: k }
}

/// The response for a score of `row`: explained by the package's scorer, converted to the API.
pub fn score_response(
    pkg: &ModelPackage,
    req: &pb::ScoreRequest,
    row: &[Value<'_>],
    score: &Score,
) -> pb::ScoreResponse {
    pb::ScoreResponse::new(pkg, &req.patient_key, score, pkg.scorer.explain(row, score, ranking(req)))
}

/// A request's events turned into the model's inputs at its prediction time, by the package's
/// own feature spec and the one extractor.
fn inputs_from_events(
    pkg: &carecast_models::ModelPackage,
    req: &pb::ScoreRequest,
) -> Result<Vec<Value<'static>>, Status> {
    use carecast_models::clock;
    use carecast_models::features::extract::{Event, STATIC};
    let inputs = pkg.events.as_ref().ok_or_else(|| {
        Status::invalid_argument(format!(
            "events: model `{}` is not trained on events; send its features by name",
            pkg.manifest.name
        ))
    })?;
    let mut codes: Vec<&str> = req.events.iter().map(|e| e.code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    // The prediction time, and every event time, within the clock's window: a time in the year
    // 3000 or before 1900 is a corrupt record, and would give absurd ages and intervals.
    let now = chrono::Utc::now().timestamp_micros();
    let at = match req.prediction_time_micros {
        0 => now,
        t => {
            clock::check(t, now).map_err(|e| Status::invalid_argument(format!("prediction_time_micros: {e}")))?;
            t
        }
    };
    let mut events = Vec::with_capacity(req.events.len());
    for (i, e) in req.events.iter().enumerate() {
        if e.code.is_empty() {
            return Err(Status::invalid_argument(format!("events[{i}].code: required")));
        }
        let value = match e.value {
            Some(v) => Event::value_of(v).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "events[{i}].value: NaN, infinite or beyond the range of a measurement"
                ))
            })?,
            None => f32::NAN,
        };
        let code = codes.binary_search(&e.code.as_str()).expect("every code is listed") as u32;
        // Scored as of now, a record from a source whose clock runs a little fast is read as now.
        let time = match e.time_micros {
            None => Ok(STATIC),
            Some(t) if req.prediction_time_micros == 0 => clock::as_of(t, now).map(|(t, _)| t),
            Some(t) => clock::check(t, now).map(|()| t),
        }
        .map_err(|e| Status::invalid_argument(format!("events[{i}].time_micros: {e}")))?;
        events.push(Event { time, code, value });
    }
    events.sort_by_key(|e| e.time);
    Ok(inputs.row(&codes, &events, at))
}

#[derive(Clone)]
pub struct Scoring {
    pub state: Arc<AppState>,
}

/// Most requests in one `ScoreBatch`.
pub const MAX_BATCH: usize = 1000;
/// Results a stream may have waiting for its client before the server stops reading its requests.
const STREAM_BUFFER: usize = 16;

/// A scored request, its band kept for the audit, and its shadow version's score.
pub(crate) struct Scored {
    pub(crate) response: pb::ScoreResponse,
    pub(crate) band: &'static str,
    shadow: Option<ShadowScore>,
}

impl Scoring {
    /// Validates, scores and explains one request (not yet audited).
    pub(crate) fn evaluate(&self, req: &pb::ScoreRequest, ws: &mut Workspace) -> Result<Scored, Status> {
        deid::check_patient_key(&req.patient_key)
            .map_err(|reason| Status::invalid_argument(format!("patient_key: {reason}")))?;
        if req.model.is_empty() {
            return Err(Status::invalid_argument("model: required"));
        }
        let version = (!req.version.is_empty()).then_some(req.version.as_str());
        let pkg = self.state.store.get(&req.model, version).map_err(store_status)?;
        let named = req
            .features
            .iter()
            .map(|(name, v)| {
                Value::try_from(v)
                    .map(|v| (name.as_str(), v))
                    .map_err(|reason| Status::invalid_argument(format!("feature `{name}`: {reason}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !req.events.is_empty() && !req.features.is_empty() {
            return Err(Status::invalid_argument("features: send features or events, not both"));
        }
        // Any version's row from the request: its features by name, or its events through that
        // version's own extractor.
        let row_of = |p: &ModelPackage| -> Result<Vec<Value<'_>>, Status> {
            if req.events.is_empty() {
                p.scorer.bind(named.iter().copied()).map_err(|e| Status::invalid_argument(e.to_string()))
            } else {
                inputs_from_events(p, req)
            }
        };
        let row = row_of(&pkg)?;
        let score = pkg.scorer.score(&row, ws).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.state.drift.observe(&pkg, &row, score.probability);
        // A request for the served version is scored in shadow too, when a candidate is set.
        let shadow = if version.is_none() {
            self.state.shadow(&pkg, &score, |p| row_of(p).map_err(|s| s.message().to_string()), ws)
        } else {
            None
        };
        Ok(Scored { response: score_response(&pkg, req, &row, &score), band: score.band.as_str(), shadow })
    }

    /// Commits the scores to the audit trail and the metrics; until it has, none may be returned.
    pub(crate) async fn audit(&self, caller: &str, scored: &[&Scored], announced: Announced<'_>) -> Result<(), Status> {
        let time = chrono::Utc::now();
        let shadow_caller = format!("{SHADOW_CALLER}{caller}");
        let mut records: Vec<AuditRecord<'_>> = scored
            .iter()
            .map(|s| AuditRecord {
                time,
                caller,
                patient_key: &s.response.patient_key,
                model: &s.response.model,
                model_version: &s.response.model_version,
                probability: s.response.probability,
                risk_band: s.band,
            })
            .collect();
        records.extend(scored.iter().filter_map(|s| {
            let shadow = s.shadow.as_ref()?;
            Some(AuditRecord {
                time,
                caller: &shadow_caller,
                patient_key: &s.response.patient_key,
                model: &s.response.model,
                model_version: &shadow.version,
                probability: shadow.probability,
                risk_band: shadow.band,
            })
        }));
        self.state
            .commit(announced, &records)
            .await
            .map_err(|Unaudited| Status::unavailable("audit trail unavailable; score withheld"))
    }
}

/// Counts a refused request in the metrics (scores are counted when committed).
fn count(rpc: &'static str, outcome: &Result<Scored, Status>) {
    if let Err(status) = outcome {
        metrics::refused(rpc, status.code());
    }
}

/// A refused request as a stream or batch result.
fn refused(req: &pb::ScoreRequest, status: &Status) -> pb::ScoreResult {
    pb::ScoreResult {
        outcome: Some(pb::score_result::Outcome::Error(pb::ScoreError {
            patient_key: req.patient_key.clone(),
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}

fn scored(s: Scored) -> pb::ScoreResult {
    pb::ScoreResult { outcome: Some(pb::score_result::Outcome::Score(s.response)) }
}

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for Scoring {
    async fn score(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        let started = std::time::Instant::now();
        let caller = self.state.caller(&request, "Score", Role::Clinician)?;
        let announced = self.state.audit.announce();
        let outcome = match self.evaluate(request.get_ref(), &mut Workspace::default()) {
            Ok(s) => self.audit(&caller, &[&s], announced).await.map(|()| s),
            Err(status) => Err(status),
        };
        count("Score", &outcome);
        metrics::answered("Score", started.elapsed().as_secs_f64());
        Ok(Response::new(outcome?.response))
    }

    type ScoreStreamStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ScoreResult, Status>>;

    async fn score_stream(
        &self,
        request: Request<tonic::Streaming<pb::ScoreRequest>>,
    ) -> Result<Response<Self::ScoreStreamStream>, Status> {
        let caller = self.state.caller(&request, "ScoreStream", Role::Clinician)?;
        let mut requests = request.into_inner();
        let (results, receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        let mut stopping = self.state.stopping.subscribe();
        tokio::spawn(async move {
            let mut ws = Workspace::default();
            // The next request is read only once the previous result has a place in the buffer;
            // once the server is stopping, none is read: the stream ends and the client reconnects.
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stopping.wait_for(|s| *s) => None,
                    next = requests.message() => Some(next.transpose()),
                };
                let Some(next) = next else {
                    let _ = results.send(Err(Status::unavailable("server shutting down: reconnect to continue"))).await;
                    break;
                };
                let Some(next) = next else { break };
                let result = match next {
                    // The client's stream broke: report it and stop (a request that was not
                    // valid protobuf is the caller's error, not the server's).
                    Err(status)
                        if status.code() == tonic::Code::Internal
                            && status.message().starts_with("failed to decode") =>
                    {
                        Err(Status::invalid_argument(status.message().to_string()))
                    }
                    Err(status) => Err(status),
                    Ok(req) => {
                        let started = std::time::Instant::now();
                        let announced = this.state.audit.announce();
                        let outcome = match this.evaluate(&req, &mut ws) {
                            Ok(s) => this.audit(&caller, &[&s], announced).await.map(|()| s),
                            Err(status) => Err(status),
                        };
                        count("ScoreStream", &outcome);
                        metrics::answered("ScoreStream", started.elapsed().as_secs_f64());
                        Ok(match outcome {
                            Ok(s) => scored(s),
                            Err(status) => refused(&req, &status),
                        })
                    }
                };
                let stop = result.is_err();
                if results.send(result).await.is_err() || stop {
                    break; // the client has gone: what it was sent is audited
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn score_batch(
        &self,
        request: Request<pb::ScoreBatchRequest>,
    ) -> Result<Response<pb::ScoreBatchResponse>, Status> {
        let started = std::time::Instant::now();
        let caller = self.state.caller(&request, "ScoreBatch", Role::Planner)?;
        let requests = request.into_inner().requests;
        if requests.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "requests: {} in one batch; at most {MAX_BATCH} (use ScoreStream, or `carecast score` for a population)",
                requests.len()
            )));
        }
        // Scoring a thousand patients is CPU work: off the async workers.
        let this = self.clone();
        let (requests, outcomes) = tokio::task::spawn_blocking(move || {
            let mut ws = Workspace::default();
            let outcomes: Vec<Result<Scored, Status>> = requests.iter().map(|r| this.evaluate(r, &mut ws)).collect();
            (requests, outcomes)
        })
        .await
        .map_err(|_| Status::internal("batch scoring failed"))?;
        let ok: Vec<&Scored> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        self.audit(&caller, &ok, self.state.audit.announce()).await?;
        outcomes.iter().for_each(|o| count("ScoreBatch", o));
        metrics::answered("ScoreBatch", started.elapsed().as_secs_f64());
        let results = outcomes
            .into_iter()
            .zip(&requests)
            .map(|(o, r)| match o {
                Ok(s) => scored(s),
                Err(status) => refused(r, &status),
            })
            .collect();
        Ok(Response::new(pb::ScoreBatchResponse { results }))
    }
}

pub struct Models {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl pb::model_service_server::ModelService for Models {
    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.state.caller(&request, "ListModels", Role::Researcher)?;
        let registry = self.state.store.registry();
        let mut models = Vec::new();
        for name in registry.models().map_err(|e| store_status(e.into()))? {
            let versions = registry.versions(&name).map_err(|e| store_status(e.into()))?;
            let current = registry.current(&name).unwrap_or_default();
            let (task, algorithm) = match self.state.store.get(&name, None) {
                Ok(p) => (p.manifest.task.name.clone(), p.manifest.algorithm.clone()),
                Err(_) => (String::new(), String::new()),
            };
            models.push(pb::ModelSummary { name, current_version: current, versions, task, algorithm });
        }
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::PromoteResponse>, Status> {
        let caller = self.state.caller(&request, "Promote", Role::Admin)?;
        let req = request.into_inner();
        if req.version.is_empty() {
            return Err(Status::invalid_argument("version: required"));
        }
        if req.force && req.reason.trim().is_empty() {
            return Err(Status::invalid_argument("reason: required to force a promotion past its gates"));
        }
        let forced = req.force.then_some(req.reason.as_str());
        self.state.store.promote(&req.name, &req.version, &caller, forced).map_err(store_status)?;
        Ok(Response::new(pb::PromoteResponse { name: req.name, current_version: req.version }))
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::RollbackResponse>, Status> {
        let caller = self.state.caller(&request, "Rollback", Role::Admin)?;
        let name = request.into_inner().name;
        let current_version = self.state.store.rollback(&name, &caller).map_err(store_status)?;
        Ok(Response::new(pb::RollbackResponse { name, current_version }))
    }

    async fn get_model(&self, request: Request<pb::GetModelRequest>) -> Result<Response<pb::GetModelResponse>, Status> {
        self.state.caller(&request, "GetModel", Role::Researcher)?;
        let req = request.into_inner();
        let version = (!req.version.is_empty()).then_some(req.version.as_str());
        let pkg = self.state.store.get(&req.name, version).map_err(store_status)?;
        let m = &pkg.manifest;
        let features = pkg.scorer.preprocessor().features.iter().map(Into::into).collect();
        let bands = pkg.scorer.definition().risk_bands;
        Ok(Response::new(pb::GetModelResponse {
            name: m.name.clone(),
            version: m.version.clone(),
            task: m.task.name.clone(),
            task_description: m.task.description.clone(),
            algorithm: m.algorithm.clone(),
            created: self
                .state
                .store
                .registry()
                .published_at(&m.name, &m.version)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            training_data_sha256: m.training_data.sha256.clone(),
            features,
            risk_bands: Some(pb::RiskBandThresholds { moderate: bands.moderate, high: bands.high }),
            metrics: Some((&pkg.metrics).into()),
        }))
    }
}

pub struct Monitoring {
    pub state: Arc<AppState>,
}

/// Most outcomes in one `RecordOutcomes` call.
pub const MAX_OUTCOMES: usize = 10_000;

#[tonic::async_trait]
impl pb::monitoring_service_server::MonitoringService for Monitoring {
    async fn record_outcomes(
        &self,
        request: Request<pb::RecordOutcomesRequest>,
    ) -> Result<Response<pb::RecordOutcomesResponse>, Status> {
        use carecast_audit::outcomes::{Outcome, OutcomeField, OutcomeLedger};
        self.state.caller(&request, "RecordOutcomes", Role::Monitor)?;
        let sent = request.into_inner().outcomes;
        if sent.len() > MAX_OUTCOMES {
            return Err(Status::invalid_argument(format!(
                "outcomes: {} in one call; at most {MAX_OUTCOMES}",
                sent.len()
            )));
        }
        let now = chrono::Utc::now().timestamp_micros();
        let (mut outcomes, mut refused) = (Vec::new(), Vec::new());
        for (i, o) in sent.iter().enumerate() {
            let time = (o.time_micros != 0).then_some(o.time_micros);
            match Outcome::checked(Some(&o.patient_key), time, Some(&o.code), now) {
                Ok(outcome) => outcomes.push(outcome),
                Err(r) => refused.push(pb::RefusedOutcome {
                    index: i as u32,
                    field: format!(
                        "outcomes[{i}].{}",
                        match r.field {
                            OutcomeField::Key => "patient_key",
                            OutcomeField::Time => "time_micros",
                            OutcomeField::Code => "code",
                        }
                    ),
                    reason: r.reason,
                }),
            }
        }
        let ledger = OutcomeLedger::for_registry(self.state.store.registry().root());
        let appended = tokio::task::spawn_blocking(move || ledger.append(&outcomes))
            .await
            .map_err(|_| Status::internal("recording outcomes failed"))?
            .map_err(|e| {
                tracing::error!(error = %e, "outcome ledger write failed");
                Status::unavailable("outcome ledger unavailable; nothing recorded")
            })?;
        Ok(Response::new(pb::RecordOutcomesResponse {
            added: appended.added,
            duplicates: appended.duplicates,
            refused,
        }))
    }
}
