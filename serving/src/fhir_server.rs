//! The EHR's FHIR server, queried for what a CDS Hooks call did not prefetch (CDS Hooks 2.0,
//! "FHIR Resource Access"), with the access token the EHR sent beside it.
//!
//! A request names its own `fhirServer`, so a service that fetched from whatever it is told
//! would let any caller make the trust's server reach any address (server-side request
//! forgery) and hand it the token. Only the FHIR servers the trust configured are queried
//! (compared as parsed URLs: scheme, host, port and path); redirects are not followed, nor
//! environment proxies; a search's next pages are followed only under the same base; each query
//! is bounded in time and size, and few run at once. A search that reports an OperationOutcome
//! (an error, or results cut short) is refused rather than read as complete. Errors never carry
//! the URL (it holds the patient's id) nor the server's answer.

use crate::setting::SettingError;
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// The longest one query (every page of it) may take; a call's queries run side by side.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most one query (every page of it) may read, in bytes.
const MAX_ANSWER: usize = 16 << 20;
/// Search pages followed per query (1,000 observations a page is the service's own `_count`).
const MAX_PAGES: usize = 10;
/// Queries in flight at once across all calls, which bounds the memory answers can hold.
const MAX_QUERIES: usize = 16;

/// Why a FHIR server could not supply the data (the service answers 412, as for absent prefetch).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fhirServer: not a FHIR server this service is configured to query")]
    NotAllowed,
    #[error("fhirAuthorization: a Bearer `access_token` is required to query the FHIR server")]
    NoToken,
    #[error("fhirServer: {0}")]
    Failed(String),
}

/// The FHIR servers this service may query, and the HTTP client it queries them with.
#[derive(Clone)]
pub struct FhirServers {
    allowed: Vec<Url>,
    http: reqwest::Client,
    queries: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Whether `url` is `base` or lies under it: the same scheme, host and port, and `base`'s path
/// segments first (URLs are parsed, so `..`, `%2e%2e`, case and default ports are normalised).
fn under(base: &Url, url: &Url) -> bool {
    let segments = |u: &Url| -> Vec<String> {
        u.path_segments().map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    };
    let (base_path, path) = (segments(base), segments(url));
    base.scheme() == url.scheme()
        && base.host() == url.host()
        && base.port_or_known_default() == url.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && path.starts_with(&base_path)
}

impl FhirServers {
    /// Checks each base URL: absolute, `https` (plain `http` only on loopback, for a local EHR
    /// sandbox), with no query, fragment or credentials.
    pub fn new(bases: &[String]) -> Result<Self, SettingError> {
        let mut allowed = Vec::new();
        for base in bases {
            let setting = format!("--fhir-server {base}");
            let url = Url::parse(base).map_err(SettingError::at(&setting))?;
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                _ => {
                    return Err(SettingError::new(setting, "must be https (http only on loopback)"));
                }
            }
            if url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(SettingError::new(setting, "a base URL without query, fragment or credentials"));
            }
            allowed.push(url);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(SettingError::at("FHIR client"))?;
        Ok(Self { allowed, http, queries: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES)) })
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Runs `query` (a prefetch template with the patient id already in it, e.g.
    /// `Observation?patient=123`) on the request's `fhirServer` with its access token, and
    /// returns the resource, or for a search one Bundle of every page's entries.
    pub async fn fetch(&self, request: &Value, query: &str) -> Result<Value, FetchError> {
        let base = request.get("fhirServer").and_then(Value::as_str).and_then(|b| Url::parse(b).ok());
        let base =
            base.filter(|b| self.allowed.iter().any(|a| under(a, b) && under(b, a))).ok_or(FetchError::NotAllowed)?;
        let authorization = request.get("fhirAuthorization");
        let token = authorization
            .filter(|a| a.get("token_type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("bearer")))
            .and_then(|a| a.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or(FetchError::NoToken)?;
        let _slot = self.queries.acquire().await.map_err(|_| FetchError::Failed("stopping".into()))?;
        let fetch = async {
            let first = format!("{}/{query}", base.as_str().trim_end_matches('/'));
            let mut url = Url::parse(&first).map_err(|_| FetchError::Failed("a query that is not a URL".into()))?;
            let (mut entries, mut budget): (Vec<Value>, usize) = (Vec::new(), MAX_ANSWER);
            for _ in 0..MAX_PAGES {
                if !under(&base, &url) {
                    return Err(FetchError::Failed("a search's next page is outside its FHIR server".into()));
                }
                let mut answer = self.get(url.as_str(), token, &mut budget).await?;
                if answer.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                    return Ok(answer);
                }
                match answer.get_mut("entry") {
                    Some(Value::Array(page))
                        if page
                            .iter()
                            .any(|e| e.pointer("/search/mode").and_then(Value::as_str) == Some("outcome")) =>
                    {
                        return Err(FetchError::Failed(
                            "the search reported an OperationOutcome (an error or a partial result)".into(),
                        ));
                    }
                    Some(Value::Array(page)) => entries.append(page),
                    None => {}
                    Some(_) => {
                        return Err(FetchError::Failed("a search Bundle's `entry` is not an array".into()));
                    }
                }
                let next = answer.get("link").and_then(Value::as_array).and_then(|links| {
                    links
                        .iter()
                        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                        .and_then(|l| l.get("url"))
                        .and_then(Value::as_str)
                });
                match next {
                    None => {
                        return Ok(
                            serde_json::json!({ "resourceType": "Bundle", "type": "searchset", "entry": entries }),
                        );
                    }
                    Some(next) => {
                        url = Url::parse(next)
                            .map_err(|_| FetchError::Failed("a search's next page is not a URL".into()))?
                    }
                }
            }
            Err(FetchError::Failed(format!("a search ran past {MAX_PAGES} pages")))
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .map_err(|_| FetchError::Failed(format!("no answer within {} s", TIMEOUT.as_secs())))?
    }

    /// One page, read within what is left of the query's `budget` of bytes.
    async fn get(&self, url: &str, token: &str, budget: &mut usize) -> Result<Value, FetchError> {
        let failed = |what: &str| FetchError::Failed(what.to_string());
        let mut response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .send()
            .await
            .map_err(|e| failed(if e.is_timeout() { "timed out" } else { "unreachable" }))?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!("the FHIR server answered HTTP {}", response.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| failed("the answer was cut off"))? {
            if chunk.len() > *budget {
                return Err(FetchError::Failed(format!("answers over {} MiB", MAX_ANSWER >> 20)));
            }
            *budget -= chunk.len();
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| failed("the answer is not JSON"))
    }
}
