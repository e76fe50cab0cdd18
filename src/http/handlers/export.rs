//! `GET /admin/export.csv`: every vote, streamed from PostgreSQL's COPY
//! (`db::export`) chunk by chunk as the client reads.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, Response};
use tracing::warn;

use crate::db::{self, export::EXPORT_CHUNK_TIMEOUT};
use crate::http::AppState;
use crate::http::body::{self, Body};
use crate::http::error::ApiError;
use crate::http::guard::Credentials;

/// Longest an export waits for its client to take the next chunk: a paused
/// download would otherwise keep its connection and its lock on `votes`.
pub const EXPORT_IDLE_READER: Duration = Duration::from_secs(30);

/// `GET /admin/export.csv`: streamed straight from `COPY … TO STDOUT`, chunk
/// by chunk as the client reads, so memory stays flat however many votes.
/// An export that cannot finish (PostgreSQL fails or stalls, a reset cuts
/// it, its client reads nothing for `EXPORT_IDLE_READER`) ends with a body
/// error, so hyper aborts the connection and the client sees an incomplete
/// transfer, never a short file that looks whole.
pub async fn export_csv<B>(
    state: &Arc<AppState>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    Credentials::of(req).authorize(&state.config, None)?;
    let db::export::Export {
        client,
        rows,
        connection,
    } = db::export::start(&state.config.database_url)
        .await
        .map_err(|e| {
            warn!(error = %e, "export failed to start");
            ApiError::DbUnavailable
        })?;
    let (taken, idle) = tokio::sync::watch::channel(());
    tokio::spawn(cut_when_idle(idle, connection));
    let chunks = futures_util::stream::unfold(
        Some((client, Box::pin(rows), taken)),
        |running| async move {
            let (client, mut rows, taken) = running?;
            let cut = |why: String| -> Option<(Result<Frame<Bytes>, body::BodyError>, _)> {
                warn!("export cut short: {why}");
                Some((Err(why.into()), None))
            };
            match tokio::time::timeout(EXPORT_CHUNK_TIMEOUT, rows.next()).await {
                Ok(Some(Ok(chunk))) => {
                    taken.send_replace(());
                    Some((Ok(Frame::data(chunk)), Some((client, rows, taken))))
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => cut(e.to_string()),
                Err(_) => cut("PostgreSQL stalled".to_owned()),
            }
        },
    );
    let body = StreamBody::new(chunks);
    Ok(body::attachment(BodyExt::boxed_unsync(body), "votes.csv"))
}

/// Closes an export's PostgreSQL connection once its client has taken
/// nothing for `EXPORT_IDLE_READER`; the body then fails on its next read.
/// Ends with the body (the sender is dropped with it).
async fn cut_when_idle(
    mut taken: tokio::sync::watch::Receiver<()>,
    connection: tokio::task::AbortHandle,
) {
    loop {
        match tokio::time::timeout(EXPORT_IDLE_READER, taken.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                warn!("export cut: its client read nothing for {EXPORT_IDLE_READER:?}");
                connection.abort();
                return;
            }
        }
    }
}
