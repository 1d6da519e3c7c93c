//! Several endpoints for one role, with retries and failover. A request is retried with
//! backoff only before any token has streamed: the pool waits for the first stream item before
//! handing the stream over, so a server that accepts the connection and then fails is retried
//! too. An endpoint that fails is marked down for a cool-down and tried last until it answers.
//! Periodic health checks leave an endpoint alone while it streams an answer: the stream proves
//! it is up, and some servers (llama.cpp's Python server) cut a stream when another request
//! arrives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;

use crate::llm::{ChatBackend, ChatRequest, ItemStream, LlmError, OpenAiEndpoint, ServerFacts};
use crate::settings::Endpoint;
use anchorbot_platform::sync;

/// Retry and health policy.
#[derive(Debug, Clone, Copy)]
pub struct PoolPolicy {
    /// Attempts per endpoint after the first, before moving on.
    pub retries: usize,
    /// First backoff delay; it doubles per retry.
    pub backoff: Duration,
    /// How long a failed endpoint is tried last.
    pub cooldown: Duration,
}

/// One endpoint and its health.
struct Member {
    /// The client.
    endpoint: OpenAiEndpoint,
    /// Until when it counts as down.
    down_until: Mutex<Option<Instant>>,
    /// Streams from this endpoint that are still being read.
    streaming: Arc<AtomicUsize>,
}

/// Counts one open stream for as long as it lives.
struct Streaming(Arc<AtomicUsize>);

impl Streaming {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Member {
    fn is_up(&self) -> bool {
        sync::lock(&self.down_until).is_none_or(|t| Instant::now() >= t)
    }

    fn mark(&self, up: bool, cooldown: Duration) {
        *sync::lock(&self.down_until) = (!up).then(|| Instant::now() + cooldown);
        self.report(up);
    }

    /// Publishes the endpoint's health as a gauge.
    fn report(&self, up: bool) {
        let endpoint = crate::ops::metrics::endpoint_label(self.endpoint.url());
        let value = if up { 1.0 } else { 0.0 };
        metrics::gauge!(crate::ops::metrics::ENDPOINT_UP, "endpoint" => endpoint).set(value);
    }
}

/// The endpoints of one role (reasoning or vision), in preference order.
pub struct EndpointPool {
    /// Members in configured order.
    members: Vec<Member>,
    /// Retry and health policy.
    policy: PoolPolicy,
}

/// What a failed attempt means for the next one.
fn retryable(e: &LlmError) -> bool {
    match e {
        LlmError::Unreachable { .. }
        | LlmError::Timeout { .. }
        | LlmError::RateLimited { .. }
        | LlmError::StreamCut(_) => true,
        LlmError::Status { status, .. } => *status >= 500 || *status == 408,
        LlmError::Protocol(_) | LlmError::AllDown { .. } | LlmError::ModelFile { .. } => false,
    }
}

/// Whether another endpoint may succeed where this one failed (a 400 would fail everywhere).
fn worth_failing_over(e: &LlmError) -> bool {
    match e {
        LlmError::Status { status, .. } => {
            !(400..500).contains(status) || matches!(status, 404 | 408 | 429)
        }
        _ => true,
    }
}

impl EndpointPool {
    /// A pool over `primary` and its fallbacks.
    pub fn new(endpoints: Vec<Endpoint>, policy: PoolPolicy) -> Self {
        Self {
            members: endpoints
                .into_iter()
                .map(|e| Member {
                    endpoint: OpenAiEndpoint::new(e),
                    down_until: Mutex::new(None),
                    streaming: Arc::default(),
                })
                .collect(),
            policy,
        }
    }

    /// Each endpoint's URL and whether it counts as healthy now (for readiness).
    pub fn health(&self) -> Vec<(String, bool)> {
        self.members
            .iter()
            .map(|m| {
                let up = m.is_up();
                m.report(up);
                (crate::ops::metrics::endpoint_label(m.endpoint.url()), up)
            })
            .collect()
    }

    /// Members to try: healthy ones first, each group in configured order.
    fn order(&self) -> Vec<&Member> {
        let (up, down): (Vec<&Member>, Vec<&Member>) = self.members.iter().partition(|m| m.is_up());
        up.into_iter().chain(down).collect()
    }

    /// Opens a stream on `member`, counted as open from the request until the stream is dropped
    /// (a health probe while the server processes the prompt would cut it just the same).
    async fn open(member: &Member, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        let busy = Streaming::start(&member.streaming);
        let mut stream = member.endpoint.stream(request).await?;
        // Wait for the first item so failures before any token are still retryable here.
        match stream.next().await {
            Some(Ok(first)) => Ok(Box::pin(
                futures_util::stream::iter([Ok(first)])
                    .chain(stream)
                    // The closure owns the guard, so the count drops with the stream.
                    .inspect(move |_| {
                        let _ = &busy;
                    }),
            )),
            Some(Err(e)) => Err(e),
            None => Err(LlmError::StreamCut(
                "the stream ended before any token".into(),
            )),
        }
    }
}

#[async_trait]
impl ChatBackend for EndpointPool {
    fn health(&self) -> Vec<(String, bool)> {
        EndpointPool::health(self)
    }

    fn describe(&self) -> String {
        let Some(first) = self.members.first() else {
            return "no model server".into();
        };
        let servers = match self.members.len() {
            1 => "its server".to_string(),
            n => format!("{n} servers"),
        };
        format!("{} on {servers}", first.endpoint.model())
    }

    async fn health_check(&self) {
        for m in &self.members {
            if m.streaming.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let result = m.endpoint.models().await;
            m.mark(result.is_ok(), self.policy.cooldown);
            if let Err(e) = result {
                tracing::warn!(endpoint = m.endpoint.url(), error = %e, "endpoint health check failed");
            }
        }
    }

    /// What the answering endpoints report: the smallest context length any serves (and
    /// where it came from), whether every one is vLLM, whether every one resumes a final
    /// assistant message itself, and their kind when they agree.
    async fn facts(&self) -> ServerFacts {
        let mut facts = ServerFacts::default();
        let mut answered = 0;
        let mut vllm = 0;
        let mut native = 0;
        let mut kinds = Vec::new();
        for m in self.order() {
            // A probe must never reach a server mid-answer (llama.cpp's server cuts the stream).
            if m.streaming.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let Ok(found) = m.endpoint.probe().await else {
                continue;
            };
            answered += 1;
            kinds.push(found.kind);
            if found.kind == crate::llm::facts::ServerKind::Vllm {
                vllm += 1;
            }
            if m.endpoint.resume_wire().is_native() {
                native += 1;
            }
            if let Some(len) = found.context_length {
                if facts.context_length.is_none_or(|b| len < b) {
                    facts.context_length = Some(len);
                    facts.context_source = found.context_source;
                }
            }
        }
        facts.reported = answered > 0;
        facts.all_vllm = facts.reported && vllm == answered;
        facts.native_resume = facts.reported && native == answered;
        facts.kind = kinds
            .first()
            .copied()
            .filter(|k| kinds.iter().all(|x| x == k));
        facts
    }

    /// Exact prompt tokens from the first endpoint that offers vLLM's `/tokenize`.
    async fn count_prompt(&self, request: &ChatRequest) -> Option<usize> {
        for m in self.order() {
            if let Some(n) = m.endpoint.tokenize_chat(request).await {
                return Some(n);
            }
        }
        None
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        let mut failures: Vec<String> = Vec::new();
        let mut last = None;
        for m in self.order() {
            let backoff = ExponentialBuilder::default()
                .with_min_delay(self.policy.backoff)
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(self.policy.retries)
                .with_jitter();
            let attempt = || Self::open(m, request);
            let result = attempt
                .retry(backoff)
                .sleep(tokio::time::sleep)
                .when(retryable)
                .adjust(|e, d| match e {
                    LlmError::RateLimited { retry_after } => Some((*retry_after).min(Duration::from_secs(10))),
                    _ => d,
                })
                .notify(|e, d| tracing::warn!(endpoint = m.endpoint.url(), error = %e, retry_in = ?d, "model request failed; retrying"))
                .await;
            match result {
                Ok(s) => {
                    m.mark(true, self.policy.cooldown);
                    return Ok(s);
                }
                Err(e) => {
                    tracing::warn!(endpoint = m.endpoint.url(), error = %e, "endpoint failed");
                    if !worth_failing_over(&e) {
                        return Err(e);
                    }
                    m.mark(false, self.policy.cooldown);
                    failures.push(e.to_string());
                    last = Some(e);
                }
            }
        }
        match (failures.len(), last) {
            (1, Some(e)) => Err(e),
            (_, _) => Err(LlmError::AllDown { failures }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        assert!(retryable(&LlmError::Status {
            status: 503,
            body: String::new()
        }));
        assert!(!retryable(&LlmError::Status {
            status: 400,
            body: String::new()
        }));
        assert!(!worth_failing_over(&LlmError::Status {
            status: 400,
            body: String::new()
        }));
        assert!(worth_failing_over(&LlmError::Status {
            status: 404,
            body: String::new()
        }));
        assert!(worth_failing_over(&LlmError::Unreachable {
            url: String::new(),
            reason: String::new()
        }));
    }

    #[test]
    fn failed_members_go_last_until_the_cooldown_ends() {
        let ep = |u: &str| Endpoint {
            url: u.into(),
            ..Endpoint::default()
        };
        let pool = EndpointPool::new(
            vec![ep("http://a/v1"), ep("http://b/v1")],
            PoolPolicy {
                retries: 0,
                backoff: Duration::from_millis(1),
                cooldown: Duration::from_millis(30),
            },
        );
        pool.members[0].mark(false, Duration::from_millis(30));
        let order: Vec<&str> = pool.order().iter().map(|m| m.endpoint.url()).collect();
        assert_eq!(order, vec!["http://b/v1", "http://a/v1"]);
        std::thread::sleep(Duration::from_millis(40));
        let order: Vec<&str> = pool.order().iter().map(|m| m.endpoint.url()).collect();
        assert_eq!(order, vec!["http://a/v1", "http://b/v1"]);
    }

    #[tokio::test]
    async fn health_checks_leave_a_streaming_endpoint_alone() {
        // A port nothing listens on: a probe would fail and mark the endpoint down.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/v1", l.local_addr().unwrap())
        };
        let pool = EndpointPool::new(
            vec![Endpoint {
                url: closed,
                ..Endpoint::default()
            }],
            PoolPolicy {
                retries: 0,
                backoff: Duration::from_millis(1),
                cooldown: Duration::from_secs(60),
            },
        );
        let busy = Streaming::start(&pool.members[0].streaming);
        pool.health_check().await;
        assert!(pool.members[0].is_up(), "probed while streaming");
        drop(busy);
        pool.health_check().await;
        assert!(!pool.members[0].is_up(), "an idle endpoint is probed");
    }
}
