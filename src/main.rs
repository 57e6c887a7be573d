//! Entry point: parses the command line, reads the config file, starts logging, checks and
//! locks the data dir, opens the broker (seeding a fresh data dir, importing load_definitions),
//! binds the listener, tells systemd it is ready and runs the reactor; or, offline, exports or
//! imports the data dir's definitions. Each way a start can fail has its own exit code
//! (sysexits.h). No protocol or broker logic here.

use coney::broker::Broker;
use coney::config::{Config, Overrides};
use coney::definitions::Definitions;
use coney::reactor::Reactor;
use coney::{config_file, logfile, notify};
use getopts::{Matches, Options};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

/// Counts heap bytes for the memory alarm.
#[global_allocator]
static GLOBAL: coney::alloc::CountingAlloc = coney::alloc::CountingAlloc;

/// Exit codes that tell a service manager why a start failed (sysexits.h).
const EXIT_USAGE: u8 = 64;
const EXIT_DATA: u8 = 65;
const EXIT_LISTEN: u8 = 69;
const EXIT_CANT_CREATE: u8 = 73;
const EXIT_IN_USE: u8 = 75;
const EXIT_CONFIG: u8 = 78;

/// Held (flock) by the process using a data dir, so a second broker or an offline import or
/// export refuses it instead of writing under a running broker.
const DATA_DIR_LOCK: &str = "coney.lock";

fn options() -> Options {
    let mut opts = Options::new();
    opts.optopt(
        "c",
        "config",
        "read settings from FILE (rabbitmq.conf syntax)",
        "FILE",
    );
    opts.optopt(
        "",
        "check-config",
        "validate FILE, print OK or the error, exit 0 or 78",
        "FILE",
    );
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
        "debug, info, warning, error, none, or an env_logger filter",
        "LEVEL",
    );
    opts.optopt(
        "",
        "log-file",
        "append log lines to FILE (reopened on SIGHUP)",
        "FILE",
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
    opts.optopt(
        "",
        "export-definitions",
        "write the data dir's definitions in RabbitMQ's JSON format to FILE ('-' for stdout) and exit; refused while a broker runs on the data dir",
        "FILE",
    );
    opts.optopt(
        "",
        "import-definitions",
        "import FILE (RabbitMQ's JSON format) into the data dir and exit; refused while a broker runs on the data dir",
        "FILE",
    );
    opts.optopt(
        "",
        "management-listen",
        "management API and web page (default 127.0.0.1:15672), or off",
        "ADDR:PORT",
    );
    opts.optopt(
        "",
        "prometheus-listen",
        "Prometheus metrics (default 127.0.0.1:15692), or off",
        "ADDR:PORT",
    );
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    opts
}

fn usage(opts: &Options) -> String {
    opts.usage(
        "Usage: coney [options]\n\nAn AMQP 0-9-1 message broker that behaves like RabbitMQ.\n\
         Command-line options override the config file.",
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opts = options();
    let m = match opts.parse(args.get(1..).unwrap_or_default()) {
        Ok(m) if m.free.is_empty() => m,
        Ok(m) => {
            eprintln!(
                "coney: unexpected argument '{}'\n\n{}",
                m.free[0],
                usage(&opts)
            );
            return ExitCode::from(EXIT_USAGE);
        }
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
    if let Some(file) = m.opt_str("check-config") {
        return check_config(Path::new(&file));
    }
    let (config, warnings) = match configure(&m) {
        Ok(c) => c,
        Err(code) => return ExitCode::from(code),
    };
    // Before logging starts, so a certificate that does not load is said on stderr like
    // any other config error, and the broker never starts without the TLS it was given.
    let tls = match coney::reactor::load_tls(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("coney: TLS: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = logfile::open(config.log_to_console(), config.log_file.as_deref()) {
        let path = config
            .log_file
            .as_deref()
            .unwrap_or(Path::new(""))
            .display();
        eprintln!("coney: log.file {path}: {e}");
        return ExitCode::from(EXIT_CANT_CREATE);
    }
    env_logger::Builder::new()
        .parse_filters(&config.log_level)
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(logfile::LogWriter)))
        .init();
    for w in &warnings {
        log::warn!("{w}");
    }
    if let Some(file) = m.opt_str("export-definitions") {
        return export_definitions(&config, &file);
    }
    if let Some(file) = m.opt_str("import-definitions") {
        return import_definitions(&config, Path::new(&file));
    }
    run(config, tls)
}

/// Builds the Config: defaults, then the file, then the flags. Errs with the exit code after
/// printing why.
fn configure(m: &Matches) -> Result<(Config, Vec<String>), u8> {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    if let Some(file) = m.opt_str("config") {
        match config_file::load(Path::new(&file), &mut config) {
            Ok(w) => warnings.extend(w.into_iter().map(|w| format!("{file}: {w}"))),
            Err(e) => {
                eprintln!("coney: {e}");
                return Err(EXIT_CONFIG);
            }
        }
    }
    let overrides = Overrides {
        listen: m.opt_str("listen"),
        data_dir: m.opt_str("data-dir").map(Into::into),
        log_level: m.opt_str("log-level"),
        log_file: m.opt_str("log-file").map(Into::into),
        vm_memory_high_watermark: m.opt_str("vm-memory-high-watermark"),
        disk_free_limit: m.opt_str("disk-free-limit"),
        management_listen: m.opt_str("management-listen"),
        prometheus_listen: m.opt_str("prometheus-listen"),
    };
    if let Err(e) = overrides.apply(&mut config) {
        eprintln!("coney: {e}");
        return Err(EXIT_USAGE);
    }
    if let Err(e) = config.validate() {
        eprintln!("coney: {e}");
        return Err(EXIT_CONFIG);
    }
    Ok((config, warnings))
}

/// `--check-config FILE`: the same reading and validation as a start, and nothing else.
fn check_config(file: &Path) -> ExitCode {
    let mut config = Config::default();
    let checked = config_file::load(file, &mut config)
        .map_err(|e| e.to_string())
        .and_then(|w| {
            config
                .validate()
                .and_then(|()| coney::reactor::load_tls(&config).map_err(|e| format!("TLS: {e}")))
                .map(|_| w)
                .map_err(|e| format!("{}: {e}", file.display()))
        });
    match checked {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("coney: warning: {}: {w}", file.display());
            }
            println!("OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coney: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Creates the data dir and proves it writable with a probe file, so a wrong owner or a
/// read-only mount fails the start (exit 73) instead of the first durable write.
fn check_data_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".coney-write-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&probe)?;
    let written = file.write_all(b"probe\n");
    drop(file);
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

/// Takes the data dir's lock; fails with WouldBlock while another process holds it.
fn lock_data_dir(dir: &Path) -> io::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(DATA_DIR_LOCK))?;
    // SAFETY: flock on a descriptor this function owns; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Checks and locks the data dir; logs why and returns the exit code if it cannot.
fn claim_data_dir(config: &Config) -> Result<File, u8> {
    let dir = &config.data_dir;
    if let Err(e) = check_data_dir(dir) {
        log::error!("data dir {} is not writable: {e}", dir.display());
        return Err(EXIT_CANT_CREATE);
    }
    lock_data_dir(dir).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            log::error!(
                "data dir {} is in use by another coney (it holds {DATA_DIR_LOCK}); stop it first",
                dir.display()
            );
            EXIT_IN_USE
        } else {
            log::error!("cannot lock the data dir {}: {e}", dir.display());
            EXIT_CANT_CREATE
        }
    })
}

/// Reads a definitions file, at most the size a document may have.
fn read_definitions(path: &Path) -> Result<Definitions, String> {
    let max = coney::limits::DEFINITIONS_FILE_MAX_BYTES as u64;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Definitions::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens the broker on the data dir: recovers it, seeds a fresh one with the configured
/// defaults (unless definitions are loaded), then imports `load_definitions` when
/// `load_definitions` is true and it is set.
fn open_broker(config: &Config, load_definitions: bool) -> Result<Broker, u8> {
    let defaults = config.default_data();
    let mut broker = Broker::open(&config.data_dir, defaults.as_ref()).map_err(|e| {
        log::error!(
            "cannot open the message store in {}: {e}",
            config.data_dir.display()
        );
        EXIT_CANT_CREATE
    })?;
    broker.set_loopback_users(config.loopback_users.clone());
    if let (true, Some(path)) = (load_definitions, &config.load_definitions) {
        let doc = read_definitions(path).map_err(|e| {
            log::error!("load_definitions: {e}");
            EXIT_CONFIG
        })?;
        broker.import_definitions(&doc, false).map_err(|e| {
            log::error!("load_definitions: {}: {e}", path.display());
            EXIT_CONFIG
        })?;
    }
    Ok(broker)
}

/// `--export-definitions FILE`: the data dir's definitions as RabbitMQ's JSON, offline.
fn export_definitions(config: &Config, file: &str) -> ExitCode {
    let _lock = match claim_data_dir(config) {
        Ok(l) => l,
        Err(code) => return ExitCode::from(code),
    };
    let broker = match open_broker(config, false) {
        Ok(b) => b,
        Err(code) => return ExitCode::from(code),
    };
    let doc = match broker.export_definitions() {
        Ok(d) => d,
        Err(e) => {
            log::error!("cannot export: {e}");
            return ExitCode::from(EXIT_DATA);
        }
    };
    let json = doc.to_json();
    let written = if file == "-" {
        io::stdout().write_all(json.as_bytes())
    } else {
        std::fs::write(file, json.as_bytes())
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("cannot write {file}: {e}");
            ExitCode::from(EXIT_CANT_CREATE)
        }
    }
}

/// `--import-definitions FILE`: applies a definitions document to the data dir, offline, all
/// or nothing (nothing is written if an entry is refused).
fn import_definitions(config: &Config, file: &Path) -> ExitCode {
    let _lock = match claim_data_dir(config) {
        Ok(l) => l,
        Err(code) => return ExitCode::from(code),
    };
    let doc = match read_definitions(file) {
        Ok(d) => d,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(EXIT_DATA);
        }
    };
    let mut broker = match open_broker(config, false) {
        Ok(b) => b,
        Err(code) => return ExitCode::from(code),
    };
    if let Err(e) = broker.import_definitions(&doc, true) {
        log::error!("{}: nothing imported: {e}", file.display());
        return ExitCode::from(EXIT_DATA);
    }
    match broker.commit_turn().and_then(|()| broker.close_clean()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!(
                "cannot write the data dir {}: {e}",
                config.data_dir.display()
            );
            ExitCode::from(EXIT_CANT_CREATE)
        }
    }
}

fn run(config: Config, tls: Option<coney::reactor::TlsKeys>) -> ExitCode {
    coney::alloc::tune_malloc();
    let _lock = match claim_data_dir(&config) {
        Ok(l) => l,
        Err(code) => return ExitCode::from(code),
    };
    raise_fd_limit();
    let broker = match open_broker(&config, true) {
        Ok(b) => b,
        Err(code) => return ExitCode::from(code),
    };
    let mut reactor = match Reactor::bind(config.clone(), broker, tls) {
        Ok(r) => r,
        // The store is open already: what fails here is a listener (its error names it).
        Err(e) => {
            log::error!("cannot listen: {e}");
            return ExitCode::from(EXIT_LISTEN);
        }
    };
    let addr = reactor
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let notifier = notify::Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref());
    notifier.ready(&format!("listening on {addr}"));
    log::info!(
        "coney {} listening on {addr} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    );
    if let Some(tls_addr) = reactor.tls_addr() {
        log::info!("AMQP over TLS (amqps) listening on {tls_addr}");
    }
    let outcome = reactor.run();
    notifier.stopping();
    let outcome = outcome.and_then(|()| reactor.close_store());
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one: every connection is a descriptor, and the
/// usual soft default of 1024 is far below what a broker should take (Go's runtime does the same).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                log::debug!(
                    "open-file limit raised from {} to {}",
                    rl.rlim_cur,
                    rl.rlim_max
                );
            }
        }
    }
}
