//! The Prometheus text exposition format 0.0.4, written the way rabbitmq_prometheus writes it:
//! one family at a time (`# TYPE`, then `# HELP`, then its samples), label values and help
//! text escaped, integers as integers and floats as `0.0`, `2.9e-5`, `NaN`. Writing is
//! incremental, so a per-object scrape over 10,000 queues can be produced across loop turns
//! (family by family, object by object) with only a cursor kept in between.
//!
//! RabbitMQ 3.10's families and labels for `/metrics` and `/metrics/per-object` are recorded
//! in tests/fixtures/rabbitmq-3.10-http/metrics*.txt; the test below rewrites both through
//! this writer and gets RabbitMQ's bytes back.

use std::io::Write;

/// The Content-Type of a scrape (what RabbitMQ 3.10 sends).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Summary,
    Untyped,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

/// A sample value: counts as integers, ratios and rates as floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; label names
/// may not contain `:`, which no caller uses).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Writes a family's `# TYPE` and `# HELP` lines. Its samples must follow before the next
/// family starts (the format requires a family's samples to be contiguous).
pub fn write_family(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType) {
    debug_assert!(valid_name(name), "metric name {name:?}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
    let _ = write!(out, "# HELP {name} ");
    for c in help.bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            c => out.push(c),
        }
    }
    out.push(b'\n');
}

/// Writes one sample line: `name{label="value",...} value`.
pub fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: Value) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        out.push(b'{');
        for (i, (k, v)) in labels.iter().enumerate() {
            debug_assert!(valid_name(k), "label name {k:?}");
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"=\"");
            for c in v.bytes() {
                match c {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    c => out.push(c),
                }
            }
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    let _ = match value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Float(v) if v.is_nan() => write!(out, "NaN"),
        Value::Float(v) if v.is_infinite() => {
            write!(out, "{}", if v > 0.0 { "+Inf" } else { "-Inf" })
        }
        Value::Float(v) => write!(out, "{v:?}"),
    };
    out.push(b'\n');
}

/// Ends a scrape with the blank line rabbitmq_prometheus (prometheus.erl) writes after the
/// last family.
pub fn write_end(out: &mut Vec<u8>) {
    out.push(b'\n');
}

/// One family being written: its header is out, its samples follow. Holding the output
/// borrow keeps a second family from starting in the middle of this one.
pub struct Family<'o, 'n> {
    out: &'o mut Vec<u8>,
    name: &'n str,
}

impl<'o, 'n> Family<'o, 'n> {
    pub fn begin(out: &'o mut Vec<u8>, name: &'n str, help: &str, kind: MetricType) -> Self {
        write_family(out, name, help, kind);
        Family { out, name }
    }

    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        write_sample(self.out, self.name, labels, value.into());
        self
    }

    /// A sample of a derived series (`_sum`, `_count` of a summary).
    pub fn sample_suffixed(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Into<Value>,
    ) -> &mut Self {
        let name = format!("{}{suffix}", self.name);
        write_sample(self.out, &name, labels, value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGGREGATED: &str = include_str!("../../tests/fixtures/rabbitmq-3.10-http/metrics.txt");
    const PER_OBJECT: &str =
        include_str!("../../tests/fixtures/rabbitmq-3.10-http/metrics-per-object.txt");

    /// A sample line split into name, labels (unescaped) and value text.
    fn parse_sample(line: &str) -> (String, Vec<(String, String)>, String) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let Some((name, rest)) = series.split_once('{') else {
            return (series.to_string(), Vec::new(), value.to_string());
        };
        let body = rest.strip_suffix('}').unwrap();
        let mut labels = Vec::new();
        let mut chars = body.chars().peekable();
        while chars.peek().is_some() {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'));
            let mut v = String::new();
            loop {
                match chars.next().unwrap() {
                    '\\' => match chars.next().unwrap() {
                        'n' => v.push('\n'),
                        c => v.push(c),
                    },
                    '"' => break,
                    c => v.push(c),
                }
            }
            labels.push((key, v));
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        (name.to_string(), labels, value.to_string())
    }

    fn value(text: &str) -> Value {
        match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) if text == "NaN" => Value::Float(f64::NAN),
            Err(_) => Value::Float(text.parse().unwrap()),
        }
    }

    /// Parses a scrape and writes it again through this writer, family by family.
    fn rewrite(scrape: &str) -> String {
        let mut out = Vec::new();
        let mut lines = scrape.lines().peekable();
        while let Some(line) = lines.next() {
            if line.is_empty() && lines.peek().is_none() {
                write_end(&mut out);
                break;
            }
            let t: Vec<&str> = line.splitn(4, ' ').collect();
            assert_eq!(&t[..2], ["#", "TYPE"], "{line}");
            let kind = match t[3] {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Untyped,
                other => panic!("type {other}"),
            };
            let help_line = lines.next().unwrap();
            let prefix = format!("# HELP {} ", t[2]);
            let help = help_line.strip_prefix(&prefix).unwrap();
            let help = help.replace("\\n", "\n").replace("\\\\", "\\");
            let mut family = Family::begin(&mut out, t[2], &help, kind);
            while let Some(l) = lines.next_if(|l| !l.starts_with('#') && !l.is_empty()) {
                let (name, labels, v) = parse_sample(l);
                let suffix = name.strip_prefix(t[2]).unwrap();
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                family.sample_suffixed(suffix, &labels, value(&v));
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// RabbitMQ 3.10's own scrapes (aggregated and per-object), parsed and written again
    /// through this writer, come back byte for byte: same line order, escaping and numbers.
    #[test]
    fn rabbitmq_scrapes_round_trip() {
        assert_eq!(rewrite(AGGREGATED), AGGREGATED);
        assert_eq!(rewrite(PER_OBJECT), PER_OBJECT);
    }

    /// The families issue 13 names exist in the recording with the labels Grafana's
    /// RabbitMQ dashboards select on.
    #[test]
    fn recorded_families_have_their_labels() {
        let has = |scrape: &str, prefix: &str| scrape.lines().any(|l| l.starts_with(prefix));
        assert!(has(
            PER_OBJECT,
            "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"other\"} 1"
        ));
        assert!(has(
            PER_OBJECT,
            "rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"work.12\"}"
        ));
        assert!(has(
            PER_OBJECT,
            "rabbitmq_channel_messages_published_total{channel=\""
        ));
        assert!(has(AGGREGATED, "rabbitmq_queue_messages_ready 1"));
        assert!(has(AGGREGATED, "rabbitmq_connections 1"));
        assert!(has(AGGREGATED, "rabbitmq_process_resident_memory_bytes "));
        assert!(has(AGGREGATED, "rabbitmq_identity_info{rabbitmq_node=\""));
    }

    /// Label values and help text are escaped as the format requires.
    #[test]
    fn escaping() {
        let mut out = Vec::new();
        Family::begin(&mut out, "coney_x", "a\\b\nc", MetricType::Gauge)
            .sample(&[("queue", "q\"1\\\n")], 3u64)
            .sample(&[], 0.5)
            .sample(&[("a", "b")], f64::INFINITY);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# TYPE coney_x gauge\n# HELP coney_x a\\\\b\\nc\n\
coney_x{queue=\"q\\\"1\\\\\\n\"} 3\nconey_x 0.5\nconey_x{a=\"b\"} +Inf\n"
        );
        assert!(valid_name("rabbitmq_queue_messages"));
        assert!(!valid_name("9x") && !valid_name("a-b") && !valid_name(""));
    }
}
