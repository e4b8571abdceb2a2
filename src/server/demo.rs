//! The `demo` provider: the mock provider (`crate::mock`), served inside the
//! gateway on a loopback port of its own, so the example config answers
//! chats with no provider account and no second process.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::StartError;
use crate::config::{Config, ProviderKind};
use crate::mock::{self, MockOptions};

/// Replies stream a few words at a reading pace, so a stream looks like one.
const DEMO_REPLY: MockOptions = MockOptions {
    latency_ms: 200,
    chunks: 24,
    chunk_delay_ms: 40,
};

/// Starts the mock when a provider is of kind `demo`, and points each such
/// provider at it. Returns the mock's task (none without a demo provider).
pub async fn serve(config: &mut Config) -> Result<Option<JoinHandle<()>>, StartError> {
    let mut demos = config
        .providers
        .iter_mut()
        .filter(|(name, provider)| {
            provider.kind.or_else(|| ProviderKind::from_name(name)) == Some(ProviderKind::Demo)
        })
        .map(|(_, provider)| provider)
        .peekable();
    if demos.peek().is_none() {
        return Ok(None);
    }
    let bind_error = |source| StartError::Bind {
        addr: "127.0.0.1:0 (the demo provider)".into(),
        source,
    };
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    for provider in demos {
        provider.api_base = Some(format!("http://{addr}/v1"));
    }
    tracing::info!(%addr, "the demo provider (canned replies) is on");
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, mock::router(DEMO_REPLY)).await {
            tracing::warn!(%err, "the demo provider stopped");
        }
    });
    Ok(Some(task))
}
