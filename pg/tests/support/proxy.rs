//! A real fault injector for the PostgreSQL tests: a proxy between the registry and the real
//! server that can cut a connection at a chosen point of its conversation. No mock of the
//! database: every byte the registry sends reaches the real server and every answer comes back,
//! until the cut.
//!
//! The proxy listens on a Unix socket in a directory of its own (`<dir>/.s.PGSQL.5432`, so
//! libpq's `host=<dir>` reaches it: [`Proxy::url`]) and forwards each connection to the server
//! that `HODEI_PG_URL` names (its Unix socket, or TCP), one thread per direction. It parses the
//! wire protocol's framing only as far as it needs: the client's untyped startup messages
//! (an `SSLRequest`/`GSSENCRequest` and the server's one-byte answer are relayed; after an
//! accepted one the connection is relayed blindly, uncut), then every server message (a type
//! byte and a 4-byte big-endian length that counts itself).
//!
//! **Cut points.** The server ends every answer to a request (a simple query, or the extended
//! protocol's `Sync`: a prepare, an execute, a `BEGIN`, a `COMMIT`, the pool's empty probe
//! query, the end of the connection's startup) with `ReadyForQuery` (`Z`). [`Proxy::arm`]
//! starts counting those messages, over every connection through the proxy; armed with
//! `Some(k)`, the proxy drops the `k`-th instead of forwarding it (what came before it in the
//! same answer is forwarded) and closes both sockets of that connection. So the server has
//! processed the request in full (a `COMMIT` is durable) and the client never learns how it
//! went: cut at the `ReadyForQuery` of a `COMMIT`, a call answers `Backend` though its change
//! is applied. Counting with [`Proxy::arm`]`(None)` and reading [`Proxy::seen`] after a call
//! gives the number of its cut points.
//!
//! [`Proxy::arm_cut`] with [`Cut::After`] forwards the `k`-th and then closes: the client has
//! its answer and finds its connection dead at its next request.
//!
//! **Requests.** The proxy also counts the client's requests (each `Sync` or simple `Query`
//! message: what the server answers with one `ReadyForQuery`), from the same arming
//! ([`Proxy::requests`]). [`Proxy::arm_cut`] with [`Cut::Request`] cuts at the client's `k`-th
//! request instead: the client's socket is closed at once (it gets no answer), and the request
//! reaches the server `delay` later, followed by the end of the connection: a `COMMIT` lost
//! with its connection, or delayed in the network, that the server still receives and runs
//! after the client gave up.
//!
//! [`Cut::Stall`] stops the connection at the client's `k`-th request without closing either
//! end: the server sees a client that went silent, the client waits for an answer. The server
//! closing the connection (ending the session) closes the client's end.
//!
//! [`Proxy::cut_pid`] is the server process of the connection cut (from its `BackendKeyData`),
//! for a test to wait until the server is done with it.
//!
//! Only one cut per arming; the connections opened after it are relayed as they are.
#![allow(dead_code)] // included by the tests that inject faults, each using what it needs

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The startup codes of the untyped requests that the server answers with one byte.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// One end of a relayed connection: the client's or the server's.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Where the real server listens.
#[derive(Debug, Clone)]
enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl Upstream {
    fn connect(&self) -> io::Result<Stream> {
        Ok(match self {
            Upstream::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            Upstream::Tcp(addr) => Stream::Tcp(TcpStream::connect(addr)?),
        })
    }
}

/// Where a cut falls, around the `ReadyForQuery` it is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cut {
    /// Instead of forwarding it: the client never learns how its request went.
    #[default]
    Instead,
    /// Right after forwarding it: the client has its answer, and its connection is dead before
    /// its next request (the server closed it between two calls, or before the next statement
    /// of a transaction).
    After,
    /// At the client's `k`-th request (counted from the arming): see the module docs.
    Request { delay: std::time::Duration },
    /// At the client's `k`-th request, which is never delivered, and nothing after it: both
    /// ends stay open (a client frozen, or cut off by its network, in the middle of a
    /// transaction). The connection ends only when the server closes it (then the client's
    /// end is closed too) or the proxy is dropped.
    Stall,
}

#[derive(Default)]
struct Counting {
    /// `ReadyForQuery` messages seen since the last [`Proxy::arm`].
    seen: u64,
    /// The client's requests seen since then.
    requests: u64,
    /// The server process of the connection cut.
    cut_pid: Option<i32>,
    /// Cut at this one (counted from the arming), if any.
    cut_at: Option<u64>,
    how: Cut,
    /// Whether the cut was made.
    cut: bool,
    /// Run at a cut of a `ReadyForQuery` ([`Proxy::at_cut`]).
    at_cut: Option<Box<dyn FnOnce() + Send>>,
}

struct Shared {
    upstream: Upstream,
    counting: Mutex<Counting>,
    /// Both ends of every connection relayed so far (closed when the proxy is dropped).
    open: Mutex<Vec<(Stream, Stream)>>,
    stop: AtomicBool,
    connections: AtomicUsize,
}

/// The proxy (see the module docs); stopped, its connections closed and its directory removed
/// when dropped.
pub struct Proxy {
    dir: PathBuf,
    url: String,
    /// Where the accepting thread listens: connecting there wakes it.
    wake: Address,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to the server of the libpq connection string `upstream` (its first host: a
    /// Unix socket directory or a TCP host), listening in a fresh directory under /tmp.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::start_on(upstream, false)
    }

    /// As [`start`](Self::start), listening on TCP (127.0.0.1, a port the system picks): the
    /// client reaches the server over TCP, with the transport settings a TCP connection gets.
    pub fn start_tcp(upstream: &str) -> Proxy {
        Proxy::start_on(upstream, true)
    }

    fn start_on(upstream: &str, tcp: bool) -> Proxy {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let config: postgres::Config = upstream.parse().expect("a libpq connection string");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = match config.get_hosts().first() {
            Some(postgres::config::Host::Unix(dir)) => {
                Upstream::Unix(dir.join(format!(".s.PGSQL.{port}")))
            }
            Some(postgres::config::Host::Tcp(host)) => Upstream::Tcp(format!("{host}:{port}")),
            None => Upstream::Unix(PathBuf::from(format!("/tmp/.s.PGSQL.{port}"))),
        };
        let dir = PathBuf::from(format!(
            "/tmp/hw-proxy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the proxy's directory");
        let (listener, mut url) = if tcp {
            let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy's TCP port");
            let port = listener.local_addr().expect("its address").port();
            (
                Listener::Tcp(listener),
                format!("host=127.0.0.1 port={port}"),
            )
        } else {
            let listener =
                UnixListener::bind(dir.join(".s.PGSQL.5432")).expect("the proxy's Unix socket");
            (
                Listener::Unix(listener),
                format!("host={} port=5432", dir.display()),
            )
        };
        if let Some(user) = config.get_user() {
            url.push_str(&format!(" user={user}"));
        }
        if let Some(db) = config.get_dbname() {
            url.push_str(&format!(" dbname={db}"));
        }
        if let Some(password) = config.get_password() {
            let password = String::from_utf8_lossy(password).replace('\\', "\\\\");
            url.push_str(&format!(" password='{}'", password.replace('\'', "\\'")));
        }
        let shared = Arc::new(Shared {
            upstream: target,
            counting: Mutex::new(Counting::default()),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let wake = listener.address(&dir);
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || loop {
                let client = listener.accept();
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || relay(&shared, client));
            })
        };
        Proxy {
            dir,
            url,
            wake,
            shared,
            accept: Some(accept),
        }
    }

    /// The connection string that reaches the server through the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes both ends of every connection relayed so far, now: as a server or a network
    /// device does between two calls. Returns once the closes are sent.
    pub fn close_all(&self) {
        for (client, server) in self.shared.open.lock().unwrap().iter() {
            client.shutdown();
            server.shutdown();
        }
    }

    /// Starts counting `ReadyForQuery` messages from zero; with `Some(k)`, cuts the connection
    /// that carries the `k`-th (see the module docs). `None`: only counts.
    pub fn arm(&self, cut_at: Option<u64>) {
        self.arm_cut(cut_at, Cut::Instead);
    }

    /// As [`arm`](Self::arm), the cut falling `how`.
    pub fn arm_cut(&self, cut_at: Option<u64>, how: Cut) {
        assert_ne!(cut_at, Some(0), "cut points count from 1");
        *self.shared.counting.lock().unwrap() = Counting {
            cut_at,
            how,
            ..Counting::default()
        };
    }

    /// Runs `f` at the cut of this arming (one cut `Instead` or `After` a `ReadyForQuery`),
    /// before the connection is closed: the server is done with the request, and the client
    /// has not yet learnt that its connection is lost. So a test makes a change at that very
    /// moment: after a commit whose reply is lost, before the client settles it. Call after
    /// [`arm_cut`](Self::arm_cut) (which forgets it).
    pub fn at_cut(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.counting.lock().unwrap().at_cut = Some(Box::new(f));
    }

    /// Stops cutting (counting goes on).
    pub fn disarm(&self) {
        self.shared.counting.lock().unwrap().cut_at = None;
    }

    /// `ReadyForQuery` messages seen since the last [`arm`](Self::arm) (the one cut included).
    pub fn seen(&self) -> u64 {
        self.shared.counting.lock().unwrap().seen
    }

    /// The client's requests (`Sync`, `Query`) seen since the last [`arm`](Self::arm).
    pub fn requests(&self) -> u64 {
        self.shared.counting.lock().unwrap().requests
    }

    /// Whether the cut of the last arming was made.
    pub fn cut(&self) -> bool {
        self.shared.counting.lock().unwrap().cut
    }

    /// The server process (pid) of the connection cut since the last arming, if known.
    pub fn cut_pid(&self) -> Option<i32> {
        self.shared.counting.lock().unwrap().cut_pid
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The directory of the proxy's socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        match &self.wake {
            Address::Unix(path) => drop(UnixStream::connect(path)),
            Address::Tcp(addr) => drop(TcpStream::connect(addr)),
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for (client, server) in self.shared.open.lock().unwrap().drain(..) {
            client.shutdown();
            server.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one untyped message (a 4-byte length counting itself, then the body) whole.
fn read_untyped(from: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if !(8..=1 << 20).contains(&n) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "startup length"));
    }
    let mut message = len.to_vec();
    message.resize(n, 0);
    from.read_exact(&mut message[4..])?;
    Ok(message)
}

/// Where the proxy listens for its clients.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// An address of a [`Listener`].
enum Address {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        Ok(match self {
            Listener::Unix(l) => Stream::Unix(l.accept()?.0),
            Listener::Tcp(l) => {
                let (stream, _) = l.accept()?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
        })
    }

    fn address(&self, dir: &Path) -> Address {
        match self {
            Listener::Unix(_) => Address::Unix(dir.join(".s.PGSQL.5432")),
            Listener::Tcp(l) => Address::Tcp(l.local_addr().expect("its address")),
        }
    }
}

/// Relays one connection until either side closes it or it is cut.
fn relay(shared: &Arc<Shared>, mut client: Stream) {
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(mut server) = shared.upstream.connect() else {
        return; // the client sees its connection closed
    };
    let ends =
        || -> io::Result<(Stream, Stream)> { Ok((client.try_clone()?, server.try_clone()?)) };
    let Ok(ends) = ends() else { return };
    shared.open.lock().unwrap().push(ends);

    // The startup phase: untyped messages from the client.
    let mut framed = true;
    loop {
        let Ok(message) = read_untyped(&mut client) else {
            return close(&client, &server);
        };
        if server.write_all(&message).is_err() {
            return close(&client, &server);
        }
        let code = u32::from_be_bytes([message[4], message[5], message[6], message[7]]);
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            let mut answer = [0u8; 1];
            if server.read_exact(&mut answer).is_err() || client.write_all(&answer).is_err() {
                return close(&client, &server);
            }
            if answer[0] == b'N' {
                continue; // the real startup message follows
            }
            framed = false; // encrypted from here on: relayed blindly
        }
        break;
    }

    if !framed {
        let upward = {
            let (Ok(mut from), Ok(mut to)) = (client.try_clone(), server.try_clone()) else {
                return close(&client, &server);
            };
            std::thread::spawn(move || {
                let _ = io::copy(&mut from, &mut to);
            })
        };
        let _ = io::copy(&mut server, &mut client);
        close(&client, &server);
        let _ = upward.join();
        return;
    }
    let conn = Arc::new(Conn::default());
    let upward = {
        let (Ok(from), Ok(to)) = (client.try_clone(), server.try_clone()) else {
            return close(&client, &server);
        };
        let shared = Arc::clone(shared);
        let conn = Arc::clone(&conn);
        std::thread::spawn(move || upward(&shared, &conn, from, to))
    };
    downward(shared, &conn, &mut server, &mut client);
    if conn.held.load(Ordering::SeqCst) {
        // The upward thread delivers a request late, then closes the server's end.
        client.shutdown();
    } else {
        close(&client, &server);
    }
    let _ = upward.join();
}

/// What the two directions of one connection share.
#[derive(Default)]
struct Conn {
    /// The server process, from `BackendKeyData`.
    pid: AtomicI32,
    /// Cut at a request: the server's end stays open until the request is delivered.
    held: AtomicBool,
}

/// The typed messages at the front of `buf`: the end of each whole one, and its type.
fn whole_messages(buf: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 5 {
        let len = u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]);
        let end = at + 1 + len as usize;
        if buf.len() < end {
            break;
        }
        out.push((end, buf[at]));
        at = end;
    }
    out
}

/// Forwards the client's messages to the server, counting its requests; at a cut armed for a
/// request, closes the client's end, then delivers the request late and closes the server's.
fn upward(shared: &Shared, conn: &Conn, mut client: Stream, mut server: Stream) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut forward = 0;
        let mut delay = None;
        let mut stall = false;
        // Armed to stall: a request goes through whole or not at all, so the messages of one
        // (an extended-protocol `Parse`/`Bind`/`Execute` runs before its `Sync`) wait for its
        // end. `requests_end`: where the last whole request in `buf` ends.
        let stalling = {
            let counting = shared.counting.lock().unwrap();
            counting.how == Cut::Stall && !counting.cut
        };
        let mut requests_end = 0;
        for (end, kind) in whole_messages(&buf) {
            forward = end;
            if kind == b'S' || kind == b'Q' {
                let mut counting = shared.counting.lock().unwrap();
                counting.requests += 1;
                let here = !counting.cut && counting.cut_at == Some(counting.requests);
                match counting.how {
                    Cut::Request { delay: d } if here => delay = Some(d),
                    Cut::Stall if here => stall = true,
                    _ => {
                        requests_end = end;
                        continue;
                    }
                }
                counting.cut = true;
                counting.cut_pid = Some(conn.pid.load(Ordering::SeqCst));
                break;
            }
        }
        if stalling {
            forward = requests_end;
        }
        if stall {
            let _ = server.write_all(&buf[..forward]);
            // Both ends stay open: `downward` closes them when the server ends the session.
            return;
        }
        if let Some(delay) = delay {
            conn.held.store(true, Ordering::SeqCst);
            client.shutdown();
            std::thread::sleep(delay);
            let _ = server.write_all(&buf[..forward]);
            server.shutdown();
            return;
        }
        if forward > 0 && server.write_all(&buf[..forward]).is_err() {
            break;
        }
        buf.drain(..forward);
    }
    if !conn.held.load(Ordering::SeqCst) {
        client.shutdown();
        server.shutdown();
    }
}

fn close(client: &Stream, server: &Stream) {
    client.shutdown();
    server.shutdown();
}

/// Forwards the server's messages to the client, counting `ReadyForQuery`; returns when either
/// side closes or at the cut (whose message is not forwarded when cut `Instead`).
fn downward(shared: &Shared, conn: &Conn, server: &mut Stream, client: &mut Stream) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // `forward`: where the part to forward ends.
        let mut forward = 0;
        let mut cut = false;
        let mut at_cut = None;
        let mut start = 0;
        for (end, kind) in whole_messages(&buf) {
            if kind == b'K' && end - start >= 9 {
                let pid = &buf[start + 5..start + 9];
                let pid = i32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]);
                conn.pid.store(pid, Ordering::SeqCst);
            }
            if kind == b'Z' {
                let mut counting = shared.counting.lock().unwrap();
                counting.seen += 1;
                let armed = matches!(counting.how, Cut::Instead | Cut::After);
                if armed && !counting.cut && counting.cut_at == Some(counting.seen) {
                    counting.cut = true;
                    counting.cut_pid = Some(conn.pid.load(Ordering::SeqCst));
                    cut = true;
                    if counting.how == Cut::After {
                        forward = end;
                    }
                    at_cut = counting.at_cut.take();
                    break;
                }
            }
            forward = end;
            start = end;
        }
        if forward > 0 && client.write_all(&buf[..forward]).is_err() {
            return;
        }
        if cut {
            if let Some(f) = at_cut {
                f();
            }
            return; // the caller closes both sockets
        }
        buf.drain(..forward);
    }
}
