//! DRF's page-number pagination: `?page=2&page_size=50`, absolute `next`/`previous` links.

use actix_web::HttpRequest;
use serde::Serialize;
use utoipa::ToSchema;

use super::query::QueryParams;
use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
/// See [`PageRequest::near_start`].
const NEAR_START: i64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageNumber {
    Number(i64),
    Last,
}

/// What a list request asks for, ready to cross into a blocking database call.
#[derive(Clone, Debug)]
pub struct PageRequest {
    page: PageNumber,
    pub size: i64,
    params: QueryParams,
    /// The list's absolute URL without query: `http://host/payments/`.
    url: String,
}

impl PageRequest {
    /// A page that is not a positive integer (or `last`) is DRF's 404 "Invalid page.";
    /// a bad `page_size` falls back to the default, and a large one is capped.
    pub fn new(req: &HttpRequest, params: &QueryParams) -> Result<Self, ApiError> {
        let page = match params.get("page") {
            None => PageNumber::Number(1),
            Some("last") => PageNumber::Last,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if n >= 1 => PageNumber::Number(n),
                _ => return Err(ApiError::InvalidPage),
            },
        };
        let size = params
            .get("page_size")
            .and_then(|raw| raw.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map_or(DEFAULT_PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE));
        let url = format!(
            "{}{}/",
            super::base_url(req),
            req.path().trim_end_matches('/')
        );
        Ok(Self {
            page,
            size,
            params: params.clone(),
            url,
        })
    }

    /// Whether the page ends within the first `NEAR_START` rows of its list (a read by an
    /// index then steps over that many at most, whatever the list's length).
    pub fn near_start(&self) -> bool {
        matches!(self.page, PageNumber::Number(n) if n.saturating_mul(self.size) <= NEAR_START)
    }

    /// Counts, checks the page exists, loads it: `load(offset, limit)`.
    pub fn fetch<T>(
        &self,
        count: i64,
        load: impl FnOnce(i64, i64) -> Result<Vec<T>, ApiError>,
    ) -> Result<Page<T>, ApiError> {
        let page = self.number_in(count)?;
        let results = load((page - 1) * self.size, self.size)?;
        Ok(self.answer(page, count, results))
    }

    /// The offset of a numbered page, known before anything is counted (None for `last`):
    /// for a read that loads the page and counts in one statement, then [`counted`].
    ///
    /// [`counted`]: PageRequest::counted
    pub fn offset(&self) -> Option<i64> {
        match self.page {
            PageNumber::Number(n) => Some((n - 1).saturating_mul(self.size)),
            PageNumber::Last => None,
        }
    }

    /// The page at [`offset`](PageRequest::offset), loaded with `count`, how many match in
    /// all, counted in the same read (0 when the read had no rows: then none match, or the
    /// page is past the end, which it is either way unless it is the first).
    pub fn counted<T>(&self, count: i64, results: Vec<T>) -> Result<Page<T>, ApiError> {
        let page = self.number_in(count)?;
        Ok(self.answer(page, count, results))
    }

    /// The page asked for, of a list of `count`: DRF's 404 "Invalid page." past the end.
    fn number_in(&self, count: i64) -> Result<i64, ApiError> {
        let last = self.last(count);
        match self.page {
            PageNumber::Last => Ok(last),
            PageNumber::Number(n) if n <= last => Ok(n),
            PageNumber::Number(_) => Err(ApiError::InvalidPage),
        }
    }

    fn last(&self, count: i64) -> i64 {
        ((count + self.size - 1) / self.size).max(1)
    }

    /// Page `page` of a list of `count`, with its links.
    fn answer<T>(&self, page: i64, count: i64, results: Vec<T>) -> Page<T> {
        let link = |n: i64| format!("{}?{}", self.url, self.params.with("page", &n.to_string()));
        Page {
            count,
            next: (page < self.last(count)).then(|| link(page + 1)),
            previous: (page > 1).then(|| link(page - 1)),
            results,
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}
