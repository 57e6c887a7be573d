//! Where and how results are printed, in rabbitmqctl 3.10's shapes: informational lines
//! ("Listing queues for vhost / ...") on standard output unless -q, -s or a JSON formatter;
//! tables as tab-separated rows under a column-name row (left out with -s or
//! --no-table-headers, and when there are no rows); `--formatter json` as `[` on a line, one
//! object per line (the second on prefixed with `,`), then `]`. A closed standard output
//! (`coneyctl list_queues | head -1`) ends the printing quietly, not the command.

use crate::cli::{Formatter, Options};
use std::io::{self, Write};

/// How a listing with no rows is shown: nothing (most listings; `[`/`]` lines in JSON), or
/// list_policies' blank line and `[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyShape {
    Nothing,
    BlankLine,
}

/// One row: per column, its table text and its JSON text.
pub type Row = Vec<(String, String)>;

pub struct Output {
    out: Box<dyn Write>,
    formatter: Formatter,
    informative: bool,
    headers: bool,
    broken: bool,
}

impl Output {
    pub fn new(options: &Options, out: Box<dyn Write>) -> Output {
        Output {
            out,
            formatter: options.formatter,
            informative: options.informative(),
            headers: !(options.silent || options.no_table_headers),
            broken: false,
        }
    }

    pub fn json(&self) -> bool {
        self.formatter == Formatter::Json
    }

    /// Writes bytes; after the reader has gone, writes nothing more.
    pub fn raw(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if let Err(e) = self.out.write_all(bytes).and_then(|_| self.out.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("coneyctl: cannot write to standard output: {e}");
            }
            self.broken = true;
        }
    }

    /// A result line, printed whatever -q says (rabbitmqctl's command output).
    pub fn line(&mut self, text: &str) {
        self.raw(format!("{text}\n").as_bytes());
    }

    /// An informational line: not with -q, -s or --formatter json.
    pub fn info(&mut self, text: &str) {
        if self.informative {
            self.line(text);
        }
    }

    /// A listing, table or JSON.
    pub fn listing(&mut self, columns: &[&str], rows: &[Row], empty: EmptyShape) {
        let mut text = String::new();
        match (self.formatter, rows.is_empty(), empty) {
            (Formatter::Table, true, EmptyShape::BlankLine) => text.push('\n'),
            (Formatter::Table, true, EmptyShape::Nothing) => {}
            (Formatter::Json, true, EmptyShape::BlankLine) => text.push_str("[]\n"),
            (Formatter::Table, false, _) => {
                if self.headers {
                    text.push_str(&columns.join("\t"));
                    text.push('\n');
                }
                for row in rows {
                    let cells: Vec<&str> = row.iter().map(|(t, _)| t.as_str()).collect();
                    text.push_str(&cells.join("\t"));
                    text.push('\n');
                }
            }
            (Formatter::Json, _, _) => {
                text.push_str("[\n");
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(&json_object(columns, row));
                    text.push('\n');
                }
                text.push_str("]\n");
            }
        }
        self.raw(text.as_bytes());
    }
}

impl Output {
    /// Rows that each carry their own columns (rabbitmqctl's table of a stream of maps, as
    /// shovel_status prints it): the header is the first row's column names, every row shows
    /// its own values, and JSON objects have each row's own keys.
    pub fn keyed_rows(&mut self, rows: &[KeyedRow]) {
        let mut text = String::new();
        match self.formatter {
            Formatter::Table => {
                if let (Some(first), true) = (rows.first(), self.headers) {
                    let names: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
                    text.push_str(&names.join("\t"));
                    text.push('\n');
                }
                for row in rows {
                    let cells: Vec<&str> = row.iter().map(|(_, (t, _))| t.as_str()).collect();
                    text.push_str(&cells.join("\t"));
                    text.push('\n');
                }
            }
            Formatter::Json => {
                text.push_str("[\n");
                for (i, row) in rows.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    let names: Vec<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
                    let cells: Row = row.iter().map(|(_, cell)| cell.clone()).collect();
                    text.push_str(&json_object(&names, &cells));
                    text.push('\n');
                }
                text.push_str("]\n");
            }
        }
        self.raw(text.as_bytes());
    }
}

/// A row of `keyed_rows`: per column, its name, table text and JSON text.
pub type KeyedRow = Vec<(String, (String, String))>;

/// `{"col":value,...}` in column order.
pub fn json_object(columns: &[&str], row: &Row) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(row)
        .map(|(c, (_, json))| format!("{}:{json}", crate::cell::json_string(c)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn render(args: &[&str], rows: &[Row], empty: EmptyShape) -> String {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let options = cli::parse(&argv).unwrap().options;
        let buf = Shared::default();
        let mut out = Output::new(&options, Box::new(buf.clone()));
        out.info("Listing queues for vhost / ...");
        out.listing(&["name", "messages"], rows, empty);
        let text = String::from_utf8(buf.0.borrow().clone()).unwrap();
        text
    }

    fn rows() -> Vec<Row> {
        vec![
            vec![
                ("q tab\there".into(), r#""q tab\there""#.into()),
                ("0".into(), "0".into()),
            ],
            vec![("q1".into(), r#""q1""#.into()), ("3".into(), "3".into())],
        ]
    }

    /// The table, -q, -s and --no-table-headers shapes, byte for byte as rabbitmqctl 3.10
    /// printed them for the same queues.
    #[test]
    fn table_shapes() {
        let body = "q tab\there\t0\nq1\t3\n";
        assert_eq!(
            render(&[], &rows(), EmptyShape::Nothing),
            format!("Listing queues for vhost / ...\nname\tmessages\n{body}")
        );
        assert_eq!(
            render(&["-q"], &rows(), EmptyShape::Nothing),
            format!("name\tmessages\n{body}")
        );
        assert_eq!(render(&["-s"], &rows(), EmptyShape::Nothing), body);
        assert_eq!(
            render(&["--no-table-headers"], &rows(), EmptyShape::Nothing),
            format!("Listing queues for vhost / ...\n{body}")
        );
    }

    /// JSON: no informational line, `[`, objects with `,` before all but the first, `]`.
    #[test]
    fn json_shape() {
        assert_eq!(
            render(&["--formatter", "json"], &rows(), EmptyShape::Nothing),
            "[\n{\"name\":\"q tab\\there\",\"messages\":0}\n,{\"name\":\"q1\",\"messages\":3}\n]\n"
        );
    }

    /// No rows: no header row; list_policies' blank line and `[]`.
    #[test]
    fn empty_shapes() {
        assert_eq!(
            render(&[], &[], EmptyShape::Nothing),
            "Listing queues for vhost / ...\n"
        );
        assert_eq!(
            render(&["--formatter", "json"], &[], EmptyShape::Nothing),
            "[\n]\n"
        );
        assert_eq!(render(&["-q"], &[], EmptyShape::BlankLine), "\n");
        assert_eq!(
            render(&["--formatter", "json"], &[], EmptyShape::BlankLine),
            "[]\n"
        );
    }

    /// A closed pipe stops output without failing or printing an error.
    #[test]
    fn broken_pipe_is_quiet() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Output::new(&Options::default(), Box::new(Closed));
        out.line("a");
        assert!(out.broken);
        out.line("b");
    }
}
