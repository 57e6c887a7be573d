//! Listing rules replayed against RabbitMQ 3.10's recorded answers: the same queue set, the
//! same query strings, byte-identical bodies (tests/fixtures/rabbitmq-3.10-http/pagination.txt).

use super::*;
use crate::http::json::ObjectWriter;

const RECORDED: &str = include_str!("../../../tests/fixtures/rabbitmq-3.10-http/pagination.txt");

struct Queue {
    name: String,
    vhost: String,
    durable: bool,
    arguments: Value,
}

impl Listable for Queue {
    fn name(&self) -> &str {
        &self.name
    }

    fn sort_value(&self, path: &[String]) -> Option<Value> {
        let (first, rest) = path.split_first()?;
        let v = match first.as_str() {
            "name" => Value::String(self.name.clone()),
            "vhost" => Value::String(self.vhost.clone()),
            "durable" => Value::Bool(self.durable),
            "arguments" => self.arguments.clone(),
            _ => return None,
        };
        rest.iter().try_fold(v, |v, key| v.get(key).cloned())
    }
}

fn write_queue(out: &mut Vec<u8>, q: &Queue, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.value("arguments", &q.arguments)
        .bool("durable", q.durable)
        .str("name", &q.name)
        .str("vhost", &q.vhost);
    o.end();
}

/// (path and query, status, body) triples from the recording.
fn recorded() -> Vec<(String, u16, String)> {
    let lines: Vec<&str> = RECORDED.lines().collect();
    lines
        .chunks(3)
        .map(|c| {
            (
                c[0].trim_start_matches("> ").to_string(),
                c[1].trim_start_matches("< ").parse().unwrap(),
                c[2].to_string(),
            )
        })
        .collect()
}

/// The queue set, from the first recorded query (every queue with every column written).
fn queues() -> Vec<Queue> {
    let (path, _, body) = &recorded()[0];
    assert_eq!(path, "/api/queues?columns=name,vhost,durable,arguments");
    let v: Vec<Value> = serde_json::from_str(body).unwrap();
    v.into_iter()
        .map(|q| Queue {
            name: q["name"].as_str().unwrap().to_string(),
            vhost: q["vhost"].as_str().unwrap().to_string(),
            durable: q["durable"].as_bool().unwrap(),
            arguments: q["arguments"].clone(),
        })
        .collect()
}

fn answer(items: &[Queue], query: &str) -> (u16, String) {
    let q = Query::parse(query).unwrap();
    let result = ListQuery::parse(&q).and_then(|lq| {
        let sel = select(items, &lq, &["vhost", "name"])?;
        let mut out = Vec::new();
        write_selection(&mut out, items, &sel, EnvelopeStyle::Sorted, |out, item| {
            write_queue(out, item, lq.filter())
        });
        Ok(out)
    });
    match result {
        Ok(body) => (200, String::from_utf8(body).unwrap()),
        Err(e) => {
            let body = e
                .body
                .map(|(err, reason)| String::from_utf8(json::error_body(&err, &reason)).unwrap())
                .unwrap_or_default();
            (e.status.code(), body)
        }
    }
}

use crate::http::json;

/// Every recorded /api/queues query gives RabbitMQ's status and exactly its body: default
/// order, sort and reverse, nested sort paths, missing values, name filters (substring,
/// regex, case), page slicing, the envelope and column selection.
#[test]
fn queue_listings_match_rabbitmq_3_10() {
    let items = queues();
    let mut compared = 0;
    for (path, status, body) in recorded() {
        let Some(query) = path.strip_prefix("/api/queues?") else {
            continue;
        };
        assert_eq!(answer(&items, query), (status, body), "{path}");
        compared += 1;
    }
    assert!(compared >= 25, "{compared}");
}

/// The error answers recorded in responses.txt for bad listing parameters.
#[test]
fn listing_errors_match_rabbitmq_3_10() {
    let items = queues();
    let cases = [
        (
            "page=4&page_size=5&columns=name",
            400,
            r#"{"error":"page_out_of_range","reason":"Page out of range, page: 4 page size: 5, len: 14"}"#,
        ),
        (
            "page=0&page_size=5",
            400,
            r#"{"error":"invalid_pagination_parameters","reason":"Invalid pagination parameters: page number 0, page size 5"}"#,
        ),
        (
            "page=1&page_size=501",
            400,
            r#"{"error":"invalid_pagination_parameters","reason":"Invalid pagination parameters: page number 1, page size 501"}"#,
        ),
        (
            "page=-1",
            400,
            r#"{"error":"invalid_pagination_parameters","reason":"Invalid pagination parameters: page number -1, page size undefined"}"#,
        ),
        (
            "page=x",
            400,
            r#"{"error":"bad_request","reason":"Pagination parameters are invalid"}"#,
        ),
        (
            "page=+1",
            400,
            r#"{"error":"bad_request","reason":"Pagination parameters are invalid"}"#,
        ),
        (
            "page_size=abc",
            400,
            r#"{"error":"bad_request","reason":"Pagination parameters are invalid"}"#,
        ),
        (
            "page=1&use_regex=true&name=(",
            400,
            r#"{"error":"bad_request","reason":"Pagination parameters are invalid"}"#,
        ),
        ("sort_reverse=1", 500, ""),
    ];
    for (query, status, body) in cases {
        assert_eq!(answer(&items, query), (status, body.to_string()), "{query}");
    }
    // Without `page`, a page_size above the maximum is not looked at.
    assert_eq!(answer(&items, "page_size=600&columns=name").0, 200);
}

/// The connections/channels envelope keeps RabbitMQ's other key order.
#[test]
fn counts_first_envelope() {
    let items: Vec<Queue> = Vec::new();
    let q = Query::parse("page=1&page_size=2&columns=name").unwrap();
    let lq = ListQuery::parse(&q).unwrap();
    let sel = select(&items, &lq, &["vhost", "name"]).unwrap();
    let mut out = Vec::new();
    write_selection(
        &mut out,
        &items,
        &sel,
        EnvelopeStyle::CountsFirst,
        |_, _| {},
    );
    let want = recorded()
        .into_iter()
        .find(|(p, _, _)| p.starts_with("/api/connections?"))
        .unwrap()
        .2;
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

/// Erlang term order across JSON types, with missing as -1.
#[test]
fn erlang_order() {
    use serde_json::json;
    let ordered = [
        None,
        Some(json!(-0.5)),
        Some(json!(0)),
        Some(json!(2.5)),
        Some(json!(false)),
        Some(json!(null)),
        Some(json!(true)),
        Some(json!({})),
        Some(json!({"b": 1})),
        Some(json!({"b": 2})),
        Some(json!({"a": 1, "b": 1})),
        Some(json!([])),
        Some(json!([1])),
        Some(json!([1, 2])),
        Some(json!([2])),
        Some(json!("")),
        Some(json!("B")),
        Some(json!("a")),
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            let want = if i == 0 && j == 0 {
                Ordering::Equal
            } else {
                i.cmp(&j)
            };
            assert_eq!(erlang_cmp(a.as_ref(), b.as_ref()), want, "{a:?} vs {b:?}");
        }
    }
    assert_eq!(erlang_cmp(None, Some(&json!(-1))), Ordering::Equal);
}

/// A listing streamed in small slices is byte for byte the listing written at once, and
/// each slice stops near its budget.
#[test]
fn streamed_listing_equals_whole() {
    let items = queues();
    for query in [
        "columns=name",
        "page=2&page_size=5&sort=name&sort_reverse=true",
    ] {
        let lq = ListQuery::parse(&Query::parse(query).unwrap()).unwrap();
        let sel = select(&items, &lq, &["vhost", "name"]).unwrap();
        let mut whole = Vec::new();
        write_selection(&mut whole, &items, &sel, EnvelopeStyle::Sorted, |out, q| {
            write_queue(out, q, lq.filter())
        });
        let mut stream = ListingStream::new(sel, EnvelopeStyle::Sorted);
        let mut streamed = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let before = streamed.len();
            let p = stream.produce(&mut streamed, 40, |out, i| {
                write_queue(out, &items[i], lq.filter())
            });
            assert!(
                streamed.len() - before < 40 + 120,
                "slice of {}",
                streamed.len() - before
            );
            if p == crate::http::response::Progress::Done {
                break;
            }
        }
        assert_eq!(streamed, whole, "{query}");
        assert!(calls > 3, "{query}: {calls} calls");
    }
}
