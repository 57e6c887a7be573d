//! Entry point: parses the command line into a `Config`, initialises logging, binds the
//! listener and runs the reactor. No protocol or broker logic here.

use coney::config::Config;
use coney::reactor::Reactor;
use getopts::Options;
use std::process::ExitCode;

/// Counts heap bytes for the memory alarm.
#[global_allocator]
static GLOBAL: coney::alloc::CountingAlloc = coney::alloc::CountingAlloc;

/// Exit codes that tell a service manager why a start failed.
const EXIT_USAGE: u8 = 64;
const EXIT_CONFIG: u8 = 78;
const EXIT_LISTEN: u8 = 69;
const EXIT_DATA_DIR: u8 = 73;

fn usage(opts: &Options) -> String {
    opts.usage("Usage: coney [options]\n\nAn AMQP 0-9-1 message broker that behaves like RabbitMQ.")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut opts = Options::new();
    opts.optopt(
        "l",
        "listen",
        "address to listen on (default 127.0.0.1:5672)",
        "ADDR:PORT",
    );
    opts.optopt(
        "d",
        "data-dir",
        "directory for durable data (default ./data)",
        "DIR",
    );
    opts.optopt(
        "",
        "log-level",
        "error, warn, info, debug or trace (default info)",
        "LEVEL",
    );
    opts.optopt(
        "",
        "vm-memory-high-watermark",
        "block publishers above this memory: a fraction of RAM (0.4) or bytes (512MB)",
        "LIMIT",
    );
    opts.optopt(
        "",
        "disk-free-limit",
        "block publishers while the data dir has less free space (default 50MB)",
        "BYTES",
    );
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    let m = match opts.parse(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("coney: {e}\n\n{}", usage(&opts));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if m.opt_present("help") {
        print!("{}", usage(&opts));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("version") {
        println!("coney {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut config = Config::default();
    if let Some(l) = m.opt_str("listen") {
        match l.parse() {
            Ok(a) => config.listen = a,
            Err(_) => {
                eprintln!("coney: --listen: '{l}' is not an ADDR:PORT");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Some(d) = m.opt_str("data-dir") {
        config.data_dir = d.into();
    }
    if let Some(l) = m.opt_str("log-level") {
        config.log_level = l;
    }
    if let Some(w) = m.opt_str("vm-memory-high-watermark") {
        match w.parse() {
            Ok(w) => config.vm_memory_high_watermark = w,
            Err(e) => {
                eprintln!("coney: --vm-memory-high-watermark: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Some(d) = m.opt_str("disk-free-limit") {
        match coney::config::parse_bytes(&d) {
            Ok(b) => config.disk_free_limit_bytes = b,
            Err(e) => {
                eprintln!("coney: --disk-free-limit: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Err(e) = config.validate() {
        eprintln!("coney: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    env_logger::Builder::new()
        .parse_filters(&config.log_level)
        .format_timestamp_millis()
        .init();
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        log::error!("data dir {}: {e}", config.data_dir.display());
        return ExitCode::from(EXIT_DATA_DIR);
    }
    let mut reactor = match Reactor::bind(config.clone()) {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_LISTEN);
        }
    };
    log::info!(
        "coney {} listening on {} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        reactor
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        config.data_dir.display()
    );
    match reactor.run().and_then(|()| reactor.close_store()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
