//! RabbitMQ's listing parameters as 3.10 applies them: `sort` (a dotted path, before the
//! endpoint's default sort), `sort_reverse`, `columns`, and pagination (`page`, `page_size`
//! up to 500, `name` with `use_regex`), the paged envelope, and their error answers. Works on
//! any list of items that can name themselves and give a value at a dotted path; it orders
//! indices, so a streamed listing can walk them across loop turns.
//!
//! Facts (tests/fixtures/rabbitmq-3.10-http/pagination.txt): pagination happens only when
//! `page` is given; `page_size` defaults to 100 and is parsed (400 if not an integer) even
//! without `page`; `name` filters only paginated listings, as a case-insensitive substring
//! or, with `use_regex=true` exactly, a case-insensitive regex; sorting compares values in
//! Erlang term order (numbers < atoms < objects < lists < strings) with a missing value as -1.

use super::error::ApiError;
use super::json::{Columns, Filter};
use super::request::Query;
use super::status::Status;
use crate::limits::{HTTP_NAME_REGEX_COMPILED_MAX_BYTES, HTTP_NAME_REGEX_MAX_BYTES};
use serde_json::Value;
use std::cmp::Ordering;
use std::io::Write;

/// Largest `page_size` (RabbitMQ's MAX_PAGE_SIZE).
pub const PAGE_SIZE_MAX: u64 = 500;
/// `page_size` when only `page` is given.
pub const PAGE_SIZE_DEFAULT: u64 = 100;

/// How a listing's `name` parameter filters items.
#[derive(Debug, Clone)]
pub enum NameFilter {
    /// Lower-cased substring.
    Substring(String),
    Regex(regex::bytes::Regex),
}

impl NameFilter {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(s) => name.to_lowercase().contains(s.as_str()),
            NameFilter::Regex(r) => r.is_match(name.as_bytes()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Pagination {
    pub page: u64,
    pub page_size: u64,
    pub name: Option<NameFilter>,
}

/// The listing parameters of one request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub pagination: Option<Pagination>,
    /// The `sort` path, split at dots; None when absent or empty.
    pub sort: Option<Vec<String>>,
    pub sort_reverse: bool,
    pub columns: Option<Columns>,
}

fn invalid() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

/// An integer as Erlang's list_to_integer reads it: optional sign, decimal digits.
fn parse_int(s: &str) -> Result<i64, ApiError> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    s.parse().map_err(|_| invalid())
}

impl ListQuery {
    /// Reads `page`, `page_size`, `name`, `use_regex`, `sort`, `sort_reverse` and `columns`.
    pub fn parse(q: &Query) -> Result<ListQuery, ApiError> {
        let page = q.get("page").map(parse_int).transpose()?;
        let page_size = q.get("page_size").map(parse_int).transpose()?;
        let pagination = match (page, page_size) {
            (None, _) => None,
            (Some(p), None) if p > 0 => Some((p as u64, PAGE_SIZE_DEFAULT)),
            (Some(p), Some(s)) if p > 0 && s > 0 && s as u64 <= PAGE_SIZE_MAX => {
                Some((p as u64, s as u64))
            }
            (Some(p), s) => {
                let s = s.map_or("undefined".to_string(), |s| s.to_string());
                return Err(ApiError::json(
                    Status::BAD_REQUEST,
                    "invalid_pagination_parameters",
                    format!("Invalid pagination parameters: page number {p}, page size {s}"),
                ));
            }
        };
        let pagination = match pagination {
            Some((page, page_size)) => Some(Pagination {
                page,
                page_size,
                name: name_filter(q)?,
            }),
            None => None,
        };
        let sort_reverse = match q.get("sort_reverse") {
            None | Some("false") => false,
            Some("true") => true,
            // RabbitMQ 3.10 crashes on any other value and answers 500 with no body.
            Some(_) => return Err(ApiError::empty(Status::INTERNAL_SERVER_ERROR)),
        };
        // RabbitMQ 3.10 sorts `sort=` by the whole item, an order nobody can use; coney
        // takes it as no sort parameter, as later RabbitMQ versions do.
        let sort = q
            .get("sort")
            .filter(|s| !s.is_empty())
            .map(|s| s.split('.').map(str::to_string).collect());
        Ok(ListQuery {
            pagination,
            sort,
            sort_reverse,
            columns: q.get("columns").map(Columns::parse),
        })
    }

    /// The column filter for each item.
    pub fn filter(&self) -> Filter<'_> {
        Filter::from(self.columns.as_ref())
    }
}

fn name_filter(q: &Query) -> Result<Option<NameFilter>, ApiError> {
    let Some(name) = q.get("name").filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if q.get("use_regex") != Some("true") {
        return Ok(Some(NameFilter::Substring(name.to_lowercase())));
    }
    if name.len() > HTTP_NAME_REGEX_MAX_BYTES {
        return Err(invalid());
    }
    // regex matches in time linear in the name, so a pattern cannot stall the loop. Built
    // without Unicode tables, so case folding is ASCII's and names are matched as bytes.
    let re = regex::bytes::RegexBuilder::new(name)
        .unicode(false)
        .case_insensitive(true)
        .size_limit(HTTP_NAME_REGEX_COMPILED_MAX_BYTES)
        .build()
        .map_err(|_| invalid())?;
    Ok(Some(NameFilter::Regex(re)))
}

/// An item of a listing, as the listing rules see it.
pub trait Listable {
    /// What `name` filters on.
    fn name(&self) -> &str;
    /// The value at a dotted path (`["arguments", "x-max-length"]`), None when absent.
    fn sort_value(&self, path: &[String]) -> Option<Value>;
}

/// The counts of the paged envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    pub total_count: usize,
    pub filtered_count: usize,
    pub item_count: usize,
    pub page: u64,
    pub page_count: u64,
    pub page_size: u64,
}

/// Which items to write, in order, and the envelope when paginated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Indices into the item list.
    pub order: Vec<usize>,
    pub page: Option<PageInfo>,
}

/// Filters, sorts and pages `items`. `default_sort` is the endpoint's (RabbitMQ uses
/// `vhost, name` for most listings); a `sort` parameter goes before it.
pub fn select<T: Listable>(
    items: &[T],
    q: &ListQuery,
    default_sort: &[&str],
) -> Result<Selection, ApiError> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    if let Some(s) = &q.sort {
        paths.push(s.clone());
    }
    paths.extend(default_sort.iter().map(|p| vec![p.to_string()]));
    let name = q.pagination.as_ref().and_then(|p| p.name.as_ref());
    let mut keyed: Vec<(Vec<Option<Value>>, usize)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| name.is_none_or(|f| f.matches(item.name())))
        .map(|(i, item)| (paths.iter().map(|p| item.sort_value(p)).collect(), i))
        .collect();
    // Ties keep the list's own order (RabbitMQ breaks them by comparing whole items).
    keyed.sort_by(|a, b| {
        a.0.iter()
            .zip(&b.0)
            .map(|(x, y)| erlang_cmp(x.as_ref(), y.as_ref()))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    if q.sort_reverse {
        order.reverse();
    }
    let Some(p) = &q.pagination else {
        return Ok(Selection { order, page: None });
    };
    let filtered = order.len();
    let start = (p.page - 1).saturating_mul(p.page_size);
    if p.page > 1 && start >= filtered as u64 {
        return Err(ApiError::json(
            Status::BAD_REQUEST,
            "page_out_of_range",
            format!(
                "Page out of range, page: {} page size: {}, len: {}",
                p.page, p.page_size, filtered
            ),
        ));
    }
    let start = start as usize;
    let end = (start + p.page_size as usize).min(filtered);
    let order: Vec<usize> = order[start.min(filtered)..end].to_vec();
    Ok(Selection {
        page: Some(PageInfo {
            total_count: items.len(),
            filtered_count: filtered,
            item_count: order.len(),
            page: p.page,
            page_count: (filtered as u64).div_ceil(p.page_size),
            page_size: p.page_size,
        }),
        order,
    })
}

/// Erlang term order over JSON values: number < atom (false, null, true) < object (by size,
/// then keys, then values) < array (element-wise) < string (bytes). Missing counts as -1.
pub fn erlang_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    const MISSING: Value = Value::Null;
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Number(_)) => 0,
            Some(Value::Bool(_) | Value::Null) => 1,
            Some(Value::Object(_)) => 2,
            Some(Value::Array(_)) => 3,
            Some(Value::String(_)) => 4,
        }
    }
    fn num(v: Option<&Value>) -> f64 {
        v.and_then(Value::as_f64).unwrap_or(-1.0)
    }
    fn atom(v: &Value) -> &'static str {
        match v {
            Value::Bool(false) => "false",
            Value::Bool(true) => "true",
            _ => "null",
        }
    }
    match rank(a).cmp(&rank(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    match (a.unwrap_or(&MISSING), b.unwrap_or(&MISSING)) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| erlang_cmp(Some(p), Some(q)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            let keys = x
                .keys()
                .zip(y.keys())
                .map(|(p, q)| p.as_bytes().cmp(q.as_bytes()));
            let values = x
                .values()
                .zip(y.values())
                .map(|(p, q)| erlang_cmp(Some(p), Some(q)));
            keys.chain(values)
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        (x @ (Value::Bool(_) | Value::Null), y @ (Value::Bool(_) | Value::Null)) => {
            atom(x).cmp(atom(y))
        }
        _ => num(a).total_cmp(&num(b)),
    }
}

/// Key order of the paged envelope: most endpoints write it with sorted keys, the
/// connection and channel listings with the counts first and `items` last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeStyle {
    Sorted,
    CountsFirst,
}

impl PageInfo {
    /// Writes the envelope up to the opening bracket of `items`.
    pub fn write_open(&self, out: &mut Vec<u8>, style: EnvelopeStyle) {
        let _ = match style {
            EnvelopeStyle::Sorted => write!(
                out,
                "{{\"filtered_count\":{},\"item_count\":{},\"items\":[",
                self.filtered_count, self.item_count
            ),
            EnvelopeStyle::CountsFirst => write!(
                out,
                "{{\"total_count\":{},\"item_count\":{},\"filtered_count\":{},\"page\":{},\
                 \"page_size\":{},\"page_count\":{},\"items\":[",
                self.total_count,
                self.item_count,
                self.filtered_count,
                self.page,
                self.page_size,
                self.page_count
            ),
        };
    }

    /// Writes the rest of the envelope after the last item.
    pub fn write_close(&self, out: &mut Vec<u8>, style: EnvelopeStyle) {
        let _ = match style {
            EnvelopeStyle::Sorted => write!(
                out,
                "],\"page\":{},\"page_count\":{},\"page_size\":{},\"total_count\":{}}}",
                self.page, self.page_count, self.page_size, self.total_count
            ),
            EnvelopeStyle::CountsFirst => write!(out, "]}}"),
        };
    }
}

/// Writes a whole selection at once: a bare array, or the envelope around the page. A
/// streamed listing does the same piecewise: `write_open`, items, `write_close`.
pub fn write_selection<T>(
    out: &mut Vec<u8>,
    items: &[T],
    sel: &Selection,
    style: EnvelopeStyle,
    mut write_item: impl FnMut(&mut Vec<u8>, &T),
) {
    match &sel.page {
        Some(p) => p.write_open(out, style),
        None => out.push(b'['),
    }
    for (n, &i) in sel.order.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_item(out, &items[i]);
    }
    match &sel.page {
        Some(p) => p.write_close(out, style),
        None => out.push(b']'),
    }
}

/// A listing written across loop turns: the envelope (or `[`), then items from where the
/// last call stopped until the budget is spent, then the close. Holds indices only; the
/// caller writes item `i` from its own state at that moment. The counts are those of the
/// selection, taken when the request arrived, as RabbitMQ's listings are a snapshot; a caller
/// whose item has gone since writes it from a snapshot of its own or as it last was.
#[derive(Debug, Clone)]
pub struct ListingStream {
    order: Vec<usize>,
    page: Option<PageInfo>,
    style: EnvelopeStyle,
    next: usize,
    opened: bool,
}

impl ListingStream {
    pub fn new(sel: Selection, style: EnvelopeStyle) -> Self {
        ListingStream {
            order: sel.order,
            page: sel.page,
            style,
            next: 0,
            opened: false,
        }
    }

    /// Writes until at least `budget` bytes were added (finishing the item it is on) or the
    /// listing is complete.
    pub fn produce(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        mut write_item: impl FnMut(&mut Vec<u8>, usize),
    ) -> super::response::Progress {
        use super::response::Progress;
        let start = out.len();
        if !self.opened {
            self.opened = true;
            match &self.page {
                Some(p) => p.write_open(out, self.style),
                None => out.push(b'['),
            }
        }
        while self.next < self.order.len() {
            if out.len() - start >= budget {
                return Progress::More;
            }
            if self.next > 0 {
                out.push(b',');
            }
            write_item(out, self.order[self.next]);
            self.next += 1;
        }
        match &self.page {
            Some(p) => p.write_close(out, self.style),
            None => out.push(b']'),
        }
        Progress::Done
    }
}

#[cfg(test)]
mod tests;
