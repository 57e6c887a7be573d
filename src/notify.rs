//! systemd readiness (the sd_notify protocol, without libsystemd): one datagram per state
//! change to the unix socket named by NOTIFY_SOCKET, a path or, when it starts with '@', an
//! abstract name. `READY=1` once the listener is bound, `STOPPING=1` at shutdown. Outside
//! systemd there is no socket and every call does nothing.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The service manager's socket, as found in NOTIFY_SOCKET.
pub struct Notifier {
    target: Option<Vec<u8>>,
}

impl Notifier {
    /// `notify_socket` is the value of NOTIFY_SOCKET (main.rs reads the environment).
    pub fn new(notify_socket: Option<&OsStr>) -> Self {
        let target = notify_socket
            .map(|s| s.as_bytes().to_vec())
            .filter(|s| !s.is_empty());
        Notifier { target }
    }

    /// Tells systemd the broker accepts connections (Type=notify waits for this).
    pub fn ready(&self, status: &str) {
        self.report(&format!("READY=1\nSTATUS={status}"));
    }

    /// Tells systemd the broker is shutting down on its own account or on request.
    pub fn stopping(&self) {
        self.report("STOPPING=1");
    }

    fn report(&self, message: &str) {
        if let Err(e) = self.send(message) {
            log::warn!("sd_notify '{}': {e}", message.lines().next().unwrap_or(""));
        }
    }

    /// Sends one datagram; Ok when there is no service manager to tell.
    pub(crate) fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        let sent = match target.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
            None => socket.send_to(message.as_bytes(), OsStr::from_bytes(target))?,
        };
        if sent != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// READY and STOPPING reach a socket named by path.
    #[test]
    fn notify_path_socket() {
        let path = std::env::temp_dir().join(format!("coney-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.as_os_str()));
        n.ready("listening on 127.0.0.1:5672");
        assert_eq!(
            receive(&server),
            "READY=1\nSTATUS=listening on 127.0.0.1:5672"
        );
        n.stopping();
        assert_eq!(receive(&server), "STOPPING=1");
        std::fs::remove_file(&path).unwrap();
    }

    /// '@' selects the abstract namespace, as systemd does.
    #[test]
    fn notify_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("coney-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let value = format!("@{name}");
        Notifier::new(Some(OsStr::new(&value))).stopping();
        assert_eq!(receive(&server), "STOPPING=1");
    }

    /// Without NOTIFY_SOCKET nothing is sent and nothing fails; a dead socket is an error.
    #[test]
    fn notify_absent_or_missing_socket() {
        assert!(Notifier::new(None).send("READY=1").is_ok());
        assert!(Notifier::new(Some(OsStr::new(""))).send("READY=1").is_ok());
        let missing = OsStr::new("/nonexistent/coney-notify.sock");
        assert!(Notifier::new(Some(missing)).send("READY=1").is_err());
    }
}
