//! Where log lines go: stderr (the journal under systemd), an append-only log file, or both.
//! env_logger hands each formatted record to `LogWriter` in one call; `reopen` (SIGHUP) opens
//! the file again by name so logrotate can rename it and signal, without copytruncate.
//! Owns no formatting and no filtering.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// New log files: the service user writes, its group (admins added to it) reads.
const LOG_FILE_MODE: u32 = 0o640;

struct Sink {
    console: bool,
    path: Option<PathBuf>,
    file: Option<File>,
}

/// Global because env_logger owns its writer and the reactor reopens from the signal arm;
/// the lock is uncontended (one thread) and held only for one write or one swap.
static SINK: Mutex<Sink> = Mutex::new(Sink {
    console: true,
    path: None,
    file: None,
});

fn sink() -> MutexGuard<'static, Sink> {
    // A panic while writing a log line leaves nothing half-done worth refusing.
    SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// Chooses the targets. Opens the file now so a bad path stops the start, not the first line.
pub fn open(console: bool, path: Option<&Path>) -> io::Result<()> {
    let file = path.map(open_append).transpose()?;
    *sink() = Sink {
        console,
        path: path.map(Path::to_path_buf),
        file,
    };
    Ok(())
}

/// The `Write` that env_logger writes to (`Target::Pipe`).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = sink();
        // Errors are dropped: a full disk must cost log lines, not stop the broker, and
        // there is nowhere left to report them.
        if let Some(f) = &mut s.file {
            let _ = f.write_all(buf);
        }
        if s.console {
            let _ = io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Neither target buffers: files are written with O_APPEND, stderr is unbuffered.
        Ok(())
    }
}

/// Opens the log file again by its name (after logrotate moved it) and logs the outcome.
/// On failure the old file stays in use, so no line is lost.
pub(crate) fn reopen() {
    match reopen_file() {
        Ok(Some(path)) => log::info!("SIGHUP: reopened log file {}", path.display()),
        Ok(None) => log::info!("SIGHUP: no log file configured; nothing to reopen"),
        Err(e) => log::error!("SIGHUP: cannot reopen the log file: {e}; still using the old one"),
    }
}

fn reopen_file() -> io::Result<Option<PathBuf>> {
    let Some(path) = sink().path.clone() else {
        return Ok(None);
    };
    let file = open_append(&path)?;
    // The old descriptor closes here; lines written to it before are in the moved file.
    sink().file = Some(file);
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the file is moved away, reopen creates a new one that receives later lines.
    #[test]
    fn logfile_reopen_after_rename() {
        let dir = std::env::temp_dir().join(format!("coney-logfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("coney.log");
        let moved = dir.join("coney.log.1");
        open(false, Some(&path)).unwrap();
        LogWriter.write_all(b"first\n").unwrap();
        std::fs::rename(&path, &moved).unwrap();
        LogWriter.write_all(b"second\n").unwrap();
        assert_eq!(reopen_file().unwrap(), Some(path.clone()));
        LogWriter.write_all(b"third\n").unwrap();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "first\nsecond\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "third\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777 & !LOG_FILE_MODE, 0);
        open(true, None).unwrap();
        assert_eq!(reopen_file().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
