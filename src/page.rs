//! Cursor pagination, for every list any transport serves: a [`PageRequest`] in, a
//! [`Page`] out (`{ "items": [...], "next_cursor": ... }` on the wire).
//!
//! Lists are newest first. Ids are UUIDv7, so the id of the last item is a stable cursor:
//! the next page is `id < cursor`, which stays correct while rows are inserted, unlike
//! offsets. The cursor is opaque to clients (base64url) so its format can change.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Error;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    /// Items strictly older than this id (the previous page's cursor).
    pub before: Option<Uuid>,
}

impl PageRequest {
    /// Checks a limit (default [`DEFAULT_LIMIT`]) and decodes a cursor this API issued.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::malformed(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let before = cursor.map(decode_cursor).transpose()?;
        Ok(Self { limit, before })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

fn decode_cursor(cursor: &str) -> Result<Uuid, Error> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| Error::malformed("invalid_cursor", "cursor is not one this API issued"))
}

/// One page of a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[schema(example = "AZN6Xnwaez6aUi8NPEtaaQ")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `fetch_limit()` rows, newest first.
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() > request.limit as usize;
        rows.truncate(request.limit as usize);
        let next_cursor = more
            .then(|| {
                rows.last()
                    .map(|row| URL_SAFE_NO_PAD.encode(id(row).as_bytes()))
            })
            .flatten();
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_marks_more_pages() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let request = PageRequest::parse(Some(2), None).unwrap();
        let page = Page::from_rows(ids.clone(), request, |id| *id);
        assert_eq!(page.items.len(), 2);
        let cursor = page.next_cursor.expect("a third row means another page");
        let next = PageRequest::parse(Some(2), Some(&cursor)).unwrap();
        assert_eq!(next.before, Some(ids[1]));
    }

    #[test]
    fn last_page_has_no_cursor() {
        let request = PageRequest::parse(Some(5), None).unwrap();
        assert!(
            Page::from_rows(vec![Uuid::now_v7()], request, |id| *id)
                .next_cursor
                .is_none()
        );
    }

    #[test]
    fn out_of_range_limit_and_garbage_cursor_are_refused() {
        for (limit, cursor) in [
            (Some(0), None),
            (Some(MAX_LIMIT + 1), None),
            (None, Some("%%%")),
            (None, Some("AAAA")),
        ] {
            assert!(PageRequest::parse(limit, cursor).is_err());
        }
    }
}
