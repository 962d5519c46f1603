//! The HTTP layer under async-openai: the run's concurrency limit, the
//! request timeout, and retries that follow the server's word.

use super::*;

tokio::task_local! {
    /// HTTP attempts made by the current call.
    pub(super) static ATTEMPTS: Cell<u32>;
}

/// The HTTP layer under async-openai: the run's concurrency limit, the
/// request timeout, and retries.
#[derive(Clone)]
pub(super) struct Transport {
    pub(super) http: ReqwestService,
    pub(super) permits: Arc<Semaphore>,
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
    pub(super) backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("no reply within {0:?} (after every retry)")]
pub(super) struct TimedOut(Duration);

/// How long to wait before retrying, as the reply asks: `retry-after-ms`
/// (OpenAI, Azure), else `Retry-After` in seconds or as an HTTP date
/// (RFC 9110: the preferred form and the two obsolete ones), a date already
/// past meaning now. `None` where the reply says nothing usable.
pub(super) fn retry_after(headers: &http::HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let header = |name: &str| Some(headers.get(name)?.to_str().ok()?.trim());
    // A non-negative number of `unit`s, as a wait of at most the cap.
    let wait = |v: &str, unit: f64| {
        let n = v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)?;
        Some(Duration::from_secs_f64(
            (n * unit).min(MAX_RETRY_AFTER.as_secs_f64()),
        ))
    };
    if let Some(w) = header("retry-after-ms").and_then(|v| wait(v, 0.001)) {
        return Some(w);
    }
    let v = header("retry-after")?;
    wait(v, 1.0).or_else(|| {
        let until = Duration::try_from(http_date(v)?.duration_since(now)).unwrap_or_default();
        Some(until.min(MAX_RETRY_AFTER))
    })
}

/// An HTTP date (RFC 9110, section 5.6.7): IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms that a recipient must still accept.
pub(super) fn http_date(v: &str) -> Option<jiff::Timestamp> {
    static IMF: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    IMF.parse_timestamp(v).ok().or_else(|| {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|f| {
                let at = jiff::civil::DateTime::strptime(f, v).ok()?;
                Some(at.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
            })
    })
}

/// Whether a failed reply is worth asking again: the server's
/// `x-should-retry` first, as OpenAI's own clients decide; else timeouts
/// (408), lock conflicts (409), rate limits (429) and server errors, but
/// not a 429 for an exhausted quota.
pub(super) fn retryable(reply: &http::Response<impl AsRef<[u8]>>) -> bool {
    match reply.headers().get("x-should-retry").map(|v| v.as_bytes()) {
        Some(b"true") => return true,
        Some(b"false") => return false,
        _ => {}
    }
    match reply.status().as_u16() {
        408 | 409 | 500..=599 => true,
        429 => {
            let body: serde_json::Value =
                serde_json::from_slice(reply.body().as_ref()).unwrap_or_default();
            let error = &body["error"];
            error["code"] != "insufficient_quota" && error["type"] != "insufficient_quota"
        }
        _ => false,
    }
}

impl Transport {
    /// Exponential backoff with jitter: between half and all of
    /// `backoff * 2^(attempt-1)`, at most a minute.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(Duration::from_secs(60));
        full.mul_f64(0.5 + 0.5 * rand::rng().random_range(0.0..1.0))
    }

    /// One attempt, holding a permit: the response read in full, so that a
    /// body cut off mid-way is retried like any other lost reply.
    pub(super) async fn attempt(
        &self,
        request: &HttpRequestFactory,
    ) -> Result<Result<http::Response<Vec<u8>>, OpenAIError>, tokio::time::error::Elapsed> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let mut http = self.http.clone();
        tokio::time::timeout(self.timeout, async move {
            use tower::Service;
            let resp = http.call(request.clone()).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(OpenAIError::Reqwest)?;
            let mut rebuilt = http::Response::new(Vec::from(body));
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            Ok(rebuilt)
        })
        .await
    }
}

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), OpenAIError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let _ = ATTEMPTS.try_with(|a| a.set(attempt));
                let last = attempt > this.max_retries;
                let wait = match this.attempt(&request).await {
                    Ok(Ok(reply)) => {
                        if reply.status().is_success() || !retryable(&reply) || last {
                            return Ok(reqwest::Response::from(reply));
                        }
                        retry_after(reply.headers(), jiff::Timestamp::now())
                            .unwrap_or_else(|| this.backoff(attempt))
                    }
                    Ok(Err(e)) => {
                        let transient = match &e {
                            OpenAIError::Reqwest(r) => {
                                r.is_timeout() || r.is_connect() || r.is_request() || r.is_body()
                            }
                            _ => false,
                        };
                        if !transient || last {
                            return Err(e);
                        }
                        this.backoff(attempt)
                    }
                    Err(_) if last => {
                        return Err(OpenAIError::Boxed(Box::new(TimedOut(this.timeout))));
                    }
                    Err(_) => this.backoff(attempt),
                };
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    pub(super) fn retry_after_reads_milliseconds_seconds_and_every_http_date_form() {
        let now: jiff::Timestamp = "1994-11-06T08:49:30Z".parse().unwrap();
        let wait = |pairs: &[(&'static str, &str)]| retry_after(&headers(pairs), now);
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        assert_eq!(wait(&[("retry-after", "2")]), secs(2.0));
        assert_eq!(wait(&[("retry-after", " 0.5 ")]), secs(0.5));
        // retry-after-ms first, as OpenAI's clients read it.
        assert_eq!(
            wait(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            secs(0.25)
        );
        assert_eq!(
            wait(&[("retry-after-ms", "soon"), ("retry-after", "9")]),
            secs(9.0)
        );
        // The three forms of an HTTP date, seven seconds after `now`.
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(wait(&[("retry-after", date)]), secs(7.0), "{date}");
        }
        // A date already past means now; waits are capped.
        assert_eq!(
            wait(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
            secs(0.0)
        );
        assert_eq!(wait(&[("retry-after", "86400")]), Some(MAX_RETRY_AFTER));
        assert_eq!(wait(&[("retry-after", "1e300")]), Some(MAX_RETRY_AFTER));
        assert_eq!(wait(&[("retry-after-ms", "1e300")]), Some(MAX_RETRY_AFTER));
        assert_eq!(
            wait(&[("retry-after", "Mon, 07 Nov 1994 08:49:37 GMT")]),
            Some(MAX_RETRY_AFTER)
        );
        // Nothing usable: the caller's own backoff applies.
        for bad in ["-1", "inf", "NaN", "tomorrow", "06 Nov 1994", ""] {
            assert_eq!(wait(&[("retry-after", bad)]), None, "{bad:?}");
        }
        assert_eq!(wait(&[]), None);
    }

    #[test]
    pub(super) fn what_is_retried_follows_the_server_then_the_status() {
        let reply = |status: u16, pairs: &[(&'static str, &str)], body: &str| {
            let mut r = http::Response::new(body.as_bytes().to_vec());
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            *r.headers_mut() = headers(pairs);
            r
        };
        let rate = r#"{"error": {"code": "rate_limit_exceeded", "type": "requests"}}"#;
        let quota = r#"{"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}"#;
        for status in [408, 409, 429, 500, 502, 503] {
            assert!(retryable(&reply(status, &[], rate)), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!retryable(&reply(status, &[], rate)), "{status}");
        }
        assert!(!retryable(&reply(429, &[], quota)));
        assert!(retryable(&reply(429, &[], "not json")));
        assert!(!retryable(&reply(503, &[("x-should-retry", "false")], "")));
        assert!(retryable(&reply(400, &[("x-should-retry", "true")], "")));
    }
}
