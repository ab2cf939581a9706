//! Bearer tokens: who may report and who may read.
//!
//! Policy (SPEC 3, issue 6):
//! - No token configured: everything is open (the default listens on loopback only).
//! - Any token configured: every `TelemetryService` call, `GET /metrics` and the JSON/SSE
//!   endpoints need `authorization: Bearer <token>`. A missing or unknown token is
//!   `UNAUTHENTICATED` (HTTP 401).
//! - Agent tokens may report (`ReportProgress`) and nothing else; viewer tokens may read
//!   (every other call, `/metrics`) and not report: a viewer reporting or an agent reading is
//!   `PERMISSION_DENIED` (HTTP 403). Agent tokens sit on every backed-up machine, so a leaked one
//!   must not reveal the fleet's history. A token listed under both flags has both roles.
//! - Always open, so load balancers and operators can probe: `grpc.health.v1.Health`, server
//!   reflection (it describes the public API, no data) and the GUI's static files (they hold no
//!   data; the GUI sends a viewer token with its calls).
//!
//! Tokens are compared in constant time on their SHA-256 digests (so neither content nor
//! length leaks through timing) and are never logged: [`Token`]'s `Debug` is redacted.

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use http::HeaderMap;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Report job progress (`ReportProgress`).
    Agent,
    /// Read history, lists, summaries, watch streams and metrics.
    Viewer,
}

/// A configured bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret itself, for sending it (clients, tests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::str::FromStr for Token {
    type Err = String;

    /// Accepts what can travel in an `authorization` header: visible ASCII, no spaces.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a token must not be empty".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token may contain only visible ASCII characters, no spaces".into());
        }
        Ok(Token(s.to_string()))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `authorization: Bearer` header.
    #[error("missing bearer token: send the header `authorization: Bearer <token>`")]
    MissingToken,
    /// A token that is not configured.
    #[error("invalid bearer token")]
    InvalidToken,
    /// A valid token without the role the call needs.
    #[error("{0}")]
    WrongRole(&'static str),
}

impl Denied {
    /// The HTTP status for the plain-HTTP endpoints: 401 or 403.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Denied::MissingToken | Denied::InvalidToken => http::StatusCode::UNAUTHORIZED,
            Denied::WrongRole(_) => http::StatusCode::FORBIDDEN,
        }
    }

    /// A plain-text HTTP answer (401 carries `WWW-Authenticate: Bearer`).
    pub fn into_http<B: From<String>>(self) -> http::Response<B> {
        let mut res = http::Response::new(B::from(format!("{self}\n")));
        *res.status_mut() = self.http_status();
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.http_status() == http::StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"backwatch\""),
            );
        }
        res
    }
}

impl From<Denied> for tonic::Status {
    fn from(d: Denied) -> tonic::Status {
        match d {
            Denied::MissingToken | Denied::InvalidToken => {
                tonic::Status::unauthenticated(d.to_string())
            }
            Denied::WrongRole(_) => tonic::Status::permission_denied(d.to_string()),
        }
    }
}

/// One configured token: its digest and roles.
struct Entry {
    digest: [u8; 32],
    agent: bool,
    viewer: bool,
}

/// The configured tokens; cheap to clone and share between the gRPC layer and HTTP handlers.
#[derive(Clone, Default)]
pub struct Auth {
    /// Empty: authentication is off.
    entries: Arc<Vec<Entry>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({} tokens)", self.entries.len())
    }
}

impl Auth {
    /// No tokens: every call is allowed.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Agent and viewer tokens; a token in both lists has both roles.
    pub fn new(agent: &[Token], viewer: &[Token]) -> Auth {
        let mut entries: Vec<Entry> = Vec::new();
        for (token, is_agent) in agent
            .iter()
            .map(|t| (t, true))
            .chain(viewer.iter().map(|t| (t, false)))
        {
            let digest = digest(token.expose().as_bytes());
            let entry = match entries.iter_mut().find(|e| e.digest == digest) {
                Some(e) => e,
                None => {
                    entries.push(Entry {
                        digest,
                        agent: false,
                        viewer: false,
                    });
                    entries.last_mut().expect("just pushed")
                }
            };
            if is_agent {
                entry.agent = true;
            } else {
                entry.viewer = true;
            }
        }
        Auth {
            entries: Arc::new(entries),
        }
    }

    /// The tokens of `--agent-token(-file)` and `--viewer-token(-file)`; logs (without the
    /// tokens) what the configuration means.
    pub fn from_config(config: &ServeConfig) -> Result<Auth> {
        let mut agent = config.agent_tokens.clone();
        if let Some(path) = &config.agent_token_file {
            agent.extend(read_token_file(path, "agent-token-file")?);
        }
        let mut viewer = config.viewer_tokens.clone();
        if let Some(path) = &config.viewer_token_file {
            viewer.extend(read_token_file(path, "viewer-token-file")?);
        }
        let auth = Auth::new(&agent, &viewer);
        if auth.is_enabled() {
            tracing::info!(
                agent_tokens = agent.len(),
                viewer_tokens = viewer.len(),
                "bearer tokens required: agents report, viewers read; health and reflection stay open"
            );
            if viewer.is_empty() {
                tracing::warn!("agent tokens are configured but no --viewer-token: every read (GUI, grpcurl, /metrics) is refused");
            }
            if agent.is_empty() {
                tracing::warn!(
                    "viewer tokens are configured but no --agent-token: every report is refused"
                );
            }
        }
        Ok(auth)
    }

    /// True when tokens are required.
    pub fn is_enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Checks the `authorization: Bearer <token>` header of a request for `need`. For the
    /// plain-HTTP endpoints: `auth.authorize(&headers, Role::Viewer).map_err(Denied::into_http)`.
    pub fn authorize(&self, headers: &HeaderMap, need: Role) -> std::result::Result<(), Denied> {
        if !self.is_enabled() {
            return Ok(());
        }
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        self.authorize_token(token, need)
    }

    /// Checks a bare token (already taken out of its header) for `need`.
    pub fn authorize_token(
        &self,
        token: Option<&str>,
        need: Role,
    ) -> std::result::Result<(), Denied> {
        if !self.is_enabled() {
            return Ok(());
        }
        let token = token.ok_or(Denied::MissingToken)?;
        let presented = digest(token.as_bytes());
        // Look at every entry, whatever matches, so timing says nothing about which did.
        let (mut known, mut agent, mut viewer) = (0u8, 0u8, 0u8);
        for e in self.entries.iter() {
            let hit = e.digest.ct_eq(&presented).unwrap_u8();
            known |= hit;
            agent |= hit & u8::from(e.agent);
            viewer |= hit & u8::from(e.viewer);
        }
        match (known, need, agent, viewer) {
            (0, _, _, _) => Err(Denied::InvalidToken),
            (_, Role::Agent, 1, _) | (_, Role::Viewer, _, 1) => Ok(()),
            (_, Role::Agent, _, _) => Err(Denied::WrongRole(
                "this token may read but not report: ReportProgress needs an agent token",
            )),
            (_, Role::Viewer, _, _) => Err(Denied::WrongRole(
                "this token may report but not read: reads need a viewer token",
            )),
        }
    }
}

impl Auth {
    /// A tower layer that answers 401/403 (plain text) to requests without a token of `need`,
    /// for plain-HTTP routes: `router.layer(auth.require(Role::Viewer))`.
    pub fn require(&self, need: Role) -> RequireLayer {
        RequireLayer {
            auth: self.clone(),
            need,
        }
    }
}

/// See [`Auth::require`].
#[derive(Clone)]
pub struct RequireLayer {
    auth: Auth,
    need: Role,
}

impl<S> tower::Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Require<S> {
        Require {
            inner,
            auth: self.auth.clone(),
            need: self.need,
        }
    }
}

/// A service behind [`RequireLayer`].
#[derive(Clone)]
pub struct Require<S> {
    inner: S,
    auth: Auth,
    need: Role,
}

type RequireFuture<T, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for Require<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: From<String> + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = RequireFuture<http::Response<RB>, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.auth.authorize(req.headers(), self.need) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(denied) => Box::pin(std::future::ready(Ok(denied.into_http()))),
        }
    }
}

/// The token of an `authorization` value: `Bearer <t>`, scheme case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// One token per line; blank lines and `#` comments are skipped.
fn read_token_file(path: &Path, flag: &'static str) -> Result<Vec<Token>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(flag, format!("cannot read {}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| {
            l.parse::<Token>().map_err(|e| {
                Error::invalid(flag, format!("{} line {}: {e}", path.display(), n + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(list: &[&str]) -> Vec<Token> {
        list.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn roles_follow_the_lists_and_a_token_in_both_has_both() {
        let auth = Auth::new(
            &tokens(&["agent-1", "both"]),
            &tokens(&["viewer-1", "both"]),
        );
        let check = |h: &str, need| auth.authorize(&headers(h), need);
        assert_eq!(check("Bearer agent-1", Role::Agent), Ok(()));
        assert!(matches!(
            check("Bearer agent-1", Role::Viewer),
            Err(Denied::WrongRole(_))
        ));
        assert_eq!(check("bearer viewer-1", Role::Viewer), Ok(()));
        assert!(matches!(
            check("Bearer viewer-1", Role::Agent),
            Err(Denied::WrongRole(_))
        ));
        assert_eq!(check("Bearer both", Role::Agent), Ok(()));
        assert_eq!(check("Bearer both", Role::Viewer), Ok(()));
        assert_eq!(
            check("Bearer agent-", Role::Agent),
            Err(Denied::InvalidToken)
        );
        assert_eq!(
            check("Basic agent-1", Role::Agent),
            Err(Denied::MissingToken)
        );
        assert_eq!(
            auth.authorize(&HeaderMap::new(), Role::Viewer),
            Err(Denied::MissingToken)
        );
    }

    #[test]
    fn no_tokens_means_open_and_tokens_never_show_in_debug() {
        assert_eq!(
            Auth::open().authorize(&HeaderMap::new(), Role::Agent),
            Ok(())
        );
        let t: Token = "s3cret".parse().unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!("with space".parse::<Token>().is_err());
        assert!("".parse::<Token>().is_err());
    }

    #[test]
    fn token_files_skip_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# agents\none\n\n  two  \n").unwrap();
        let read = read_token_file(&path, "agent-token-file").unwrap();
        assert_eq!(read, tokens(&["one", "two"]));
        std::fs::write(&path, "bad token\n").unwrap();
        let err = read_token_file(&path, "agent-token-file").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
