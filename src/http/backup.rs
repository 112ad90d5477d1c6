//! `POST /admin/backup`: an online backup of the redb store, taken by the hub that holds it.
//!
//! The hub owns the store's lock, so no other process can read the file safely while it runs;
//! the hub itself copies everything one read transaction sees into a new redb file
//! ([`crate::store::Store::snapshot`]) and streams it back. Publishing goes on meanwhile: the
//! snapshot is the store as of one commit. Only an admin token may ask: a JWT that verifies with
//! the publisher key and carries `{"herald": {"admin": true}}` (`herald token --admin`), in the
//! `Authorization` header only (never a cookie or the query string, so a browser cannot be made
//! to start one). `herald backup` is the client.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};

use super::AppState;
use super::body::ResponseBody;
use super::problem::ApiError;
use crate::auth::{AuthError, TokenSource, extract_token};
use crate::config::StoreSpec;
use crate::store::SnapshotError;

/// The path of the endpoint.
pub(crate) const PATH: &str = "/admin/backup";

/// Response headers describing the snapshot.
pub(crate) const RECORDS_HEADER: &str = "herald-backup-records";
pub(crate) const LAST_EVENT_ID_HEADER: &str = "herald-backup-last-event-id";
pub(crate) const LAST_SEQ_HEADER: &str = "herald-backup-last-seq";

/// The media type of a snapshot: a redb file of herald's schema.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.herald.redb";

/// Chunks read from the snapshot file per send.
const CHUNK: usize = 64 * 1024;

/// Takes a snapshot and streams it.
pub(crate) async fn backup<B>(
    state: &AppState,
    request: &Request<B>,
) -> Result<Response<ResponseBody>, ApiError> {
    authorize(state, request)?;
    if state.hub.is_closing() {
        return Err(ApiError::Unavailable("the hub is shutting down".into()));
    }
    let snapshot = match state.store.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(SnapshotError::Unsupported) => {
            return Err(ApiError::NotFound(unsupported(&state.config.store).into()));
        }
        Err(SnapshotError::Store(error)) => return Err(error.into()),
    };
    tracing::info!(
        bytes = snapshot.bytes,
        records = snapshot.records,
        last_seq = snapshot.last_seq,
        "backup: snapshot taken, sending it"
    );
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut file = snapshot.file;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => {
                    let chunk = Bytes::copy_from_slice(&buffer[..read]);
                    if sender.blocking_send(chunk).is_err() {
                        break; // the client went away
                    }
                }
                Err(error) => {
                    // The body ends short of its content-length: the client sees a failure.
                    tracing::warn!(%error, "backup: reading the snapshot failed");
                    break;
                }
            }
        }
    });
    let mut response = Response::new(ResponseBody::chunks(receiver, snapshot.bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(snapshot.bytes));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(RECORDS_HEADER, HeaderValue::from(snapshot.records));
    headers.insert(LAST_SEQ_HEADER, HeaderValue::from(snapshot.last_seq));
    if let Some(id) = snapshot
        .newest_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(LAST_EVENT_ID_HEADER, id);
    }
    Ok(response)
}

/// 401 without a valid token in the `Authorization` header, 403 without the admin claim.
fn authorize<B>(state: &AppState, request: &Request<B>) -> Result<(), ApiError> {
    let token = match extract_token(request.headers(), request.uri().query()) {
        Some((token, TokenSource::Header)) => token,
        Some(_) => {
            return Err(ApiError::Unauthorized(
                "an admin token is accepted in the Authorization header only".into(),
            ));
        }
        None => return Err(AuthError::Missing.into()),
    };
    if !state.auth.has_publisher_key() {
        return Err(ApiError::Unauthorized(
            "admin tokens verify with the publisher key, and this hub has none (--jwt-key or --publisher-jwt-key)".into(),
        ));
    }
    let claims = state.auth.verify_publisher(&token)?;
    if !claims.admin {
        return Err(ApiError::Forbidden(
            "this token lacks the admin claim {\"herald\": {\"admin\": true}} (herald token --admin)"
                .into(),
        ));
    }
    Ok(())
}

/// What to do instead, for a store herald cannot snapshot.
fn unsupported(store: &StoreSpec) -> &'static str {
    match store {
        StoreSpec::Memory => {
            "this hub keeps history in memory (--store memory:): there is no file to back up"
        }
        StoreSpec::Redis { .. } => {
            "history lives in Redis: back it up with Redis (RDB snapshots or AOF), not through the hub"
        }
        StoreSpec::Nats { .. } => {
            "history lives in a NATS JetStream stream: back it up with `nats stream backup`, not through the hub"
        }
        StoreSpec::Path(_) => "this store cannot be snapshotted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_that_cannot_be_snapshotted_names_what_to_do_instead() {
        let redis = StoreSpec::Redis {
            url: "redis://127.0.0.1/".into(),
            prefix: "herald".into(),
        };
        let nats = StoreSpec::Nats {
            url: "nats://127.0.0.1/".into(),
            prefix: "herald".into(),
        };
        assert!(unsupported(&StoreSpec::Memory).contains("memory:"));
        assert!(unsupported(&redis).contains("RDB snapshots or AOF"));
        assert!(unsupported(&nats).contains("nats stream backup"));
    }
}
