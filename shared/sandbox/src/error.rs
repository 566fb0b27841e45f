/// A failed sandbox operation called through a handle.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listener on `127.0.0.1` could not be opened.
    #[error("failed to bind the sandbox listener on 127.0.0.1")]
    Bind {
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for webhook deliveries could not be built.
    #[error("failed to build the webhook HTTP client")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    /// A sandbox was started outside a Tokio runtime.
    #[error("a sandbox must be started inside a Tokio runtime")]
    NoRuntime,
    /// A simulated edit named a record the sandbox does not have.
    #[error("{kind} {id} not found in the sandbox")]
    NotFound { kind: &'static str, id: String },
    /// A simulated edit carried a value the platform would reject.
    #[error("invalid edit of {kind} {id}: {message}")]
    InvalidEdit {
        kind: &'static str,
        id: String,
        message: String,
    },
}
