//! Cursor pagination, for every list any transport serves: a [`PageRequest`] in, a
//! [`Page`] out (`{ "items": [...], "next_cursor": ... }` on the wire).
//!
//! Lists are newest first. Ids are UUIDv7, so the id of the last item is a stable cursor:
//! the next page is `id < cursor`, which stays correct while rows are inserted, unlike
//! offsets. The cursor is opaque to clients (base64url) so its format can change.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Type, schema::Schema},
};
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
    /// Checks a limit (default [`DEFAULT_LIMIT`]) and decodes a cursor this API issued; an
    /// empty cursor asks for the first page, as none does (for clients that always send
    /// `cursor=` with whatever the last page gave).
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::malformed(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let before = cursor
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?;
        Ok(Self { limit, before })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// The cursor of the page that follows the row `id` (a Relay edge's cursor, too).
pub fn cursor_after(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, Error> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| Error::malformed("invalid_cursor", "cursor is not one this API issued"))
}

/// The schema of a cursor: what [`Page::from_rows`] issues, 16 bytes in unpadded base64url
/// (22 characters, the last carrying 2 bits, so one of `A`, `Q`, `g`, `w`), or nothing.
pub struct Cursor;

impl PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(?:[A-Za-z0-9_-]{21}[AQgw])?$"))
            .description(Some(
                "The `next_cursor` of the previous page (empty or absent: the first page).",
            ))
            .examples(["AZN6Xnwaez6aUi8NPEtaaQ"])
            .into()
    }
}

impl ToSchema for Cursor {}

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
            .then(|| rows.last().map(|row| cursor_after(id(row))))
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

    #[test]
    fn the_cursor_schema_admits_exactly_the_cursors_parse_accepts() {
        let schema = serde_json::to_value(Cursor::schema()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let alphabet: Vec<char> = ('A'..='Z')
            .chain('a'..='z')
            .chain('0'..='9')
            .chain(['-', '_', '+', '/', '='])
            .collect();
        let issued = Page::from_rows(
            vec![Uuid::now_v7(), Uuid::now_v7()],
            PageRequest::parse(Some(1), None).unwrap(),
            |id| *id,
        )
        .next_cursor
        .unwrap();
        let mut samples = vec![String::new(), issued, "AAAA".to_owned(), "A".repeat(23)];
        // Every last character after a fixed 21, and a spread of other positions.
        for last in &alphabet {
            samples.push(format!("{}{last}", "AZN6Xnwaez6aUi8NPEtaa"));
            samples.push(format!("{last}{}", "ZN6Xnwaez6aUi8NPEtaaQ"));
        }
        for sample in samples {
            let admitted = validator.is_valid(&serde_json::Value::from(sample.as_str()));
            let accepted = PageRequest::parse(None, Some(&sample)).is_ok();
            assert_eq!(admitted, accepted, "{sample:?}");
        }
    }
}
