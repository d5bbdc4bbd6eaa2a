//! `?limit=&cursor=` on list routes, read into the application's [`PageRequest`] (lists
//! answer with `crate::page::Page`).

use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    error::Error,
    page::{Cursor, PageRequest},
};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

impl TryFrom<PageParams> for PageRequest {
    type Error = Error;

    fn try_from(params: PageParams) -> Result<Self, Error> {
        PageRequest::parse(params.limit, params.cursor.as_deref())
    }
}
