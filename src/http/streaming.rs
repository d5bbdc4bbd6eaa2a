//! Streamed response bodies: what an export task sends into a bounded channel leaves as it
//! comes, so memory stays constant however much there is, and a slow reader slows the
//! reading. A failure after the first byte can only end the stream early (the status is
//! sent already); the producing task logs it.

use std::convert::Infallible;

use axum::{
    body::{Body, Bytes},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc::Receiver;

/// The media type of one JSON object per line.
pub const NDJSON: &str = "application/x-ndjson";

/// A 200 response of `content_type` whose body is `header`, then each item `items` yields,
/// as `encode` writes it.
pub fn lines<T: Send + 'static>(
    items: Receiver<T>,
    header: Vec<u8>,
    encode: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static,
    content_type: &'static str,
) -> Response {
    let header = futures_util::stream::iter(
        Some(header)
            .filter(|header| !header.is_empty())
            .map(|header| Ok::<_, Infallible>(Bytes::from(header))),
    );
    let body = header.chain(futures_util::stream::unfold(
        (items, encode),
        |(mut items, encode)| async move {
            let item = items.recv().await?;
            let line = Bytes::from(encode(&item));
            Some((Ok::<_, Infallible>(line), (items, encode)))
        },
    ));
    let mut response = Body::from_stream(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `item` as one NDJSON line.
pub fn ndjson_line<T: Serialize>(item: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(item).unwrap_or_default();
    line.push(b'\n');
    line
}
