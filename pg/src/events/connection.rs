//! A subscription reader's connection: the asynchronous client on a current-thread runtime of
//! its own, every request (connecting included) under a deadline on the client's clock.
//!
//! Why not the registry's blocking client: a request of it waits for the server's answer for
//! as long as the connection lives, and the transport's timeouts (`crate::pool`'s keepalives
//! and `tcp_user_timeout`) do nothing on a Unix socket nor against a backend whose kernel still
//! acknowledges (a stopped backend, a frozen server). A subscriber's `recv(timeout)`, its drop
//! and its registry's drop must keep their bounds whatever the server does, as the leadership
//! lease's calls do (`crate::leadership`: the same design). A request that runs out of time
//! leaves the connection broken: it is never used again, and dropping it closes the socket;
//! the reader opens a new one at its next read.
//!
//! The notifications of its `LISTEN` are counted, not kept: a reader needs to know only that a
//! commit was announced since its last read began.

use std::collections::HashMap;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Row, Socket, Statement};

use crate::error::DbError;

/// How long a reader waits for the server's answer beyond what its caller asked to wait: a
/// `fill` given `wait` returns within `wait` plus this, whatever the server does. Long enough
/// for any one request of a reader on a loaded server (a batch is 1,000 rows); when it runs
/// out on a healthy server, the cost is a new connection, never an event lost or repeated.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The instant `timeout` after now (a distant one when that cannot be represented).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 86_400)))
        .unwrap_or(now)
}

/// One reader's connection. Dropped with [`discard`].
pub(crate) struct ReaderConn {
    client: Client,
    /// Driven only while a request or a wait of this reader blocks on `runtime`.
    connection: Connection<Socket, NoTlsStream>,
    runtime: tokio::runtime::Runtime,
    statements: HashMap<&'static str, Statement>,
    /// Notifications received since the last read began.
    notified: usize,
    /// A request ran out of time, or the connection ended: never used again.
    broken: bool,
    /// Its session `LISTEN`s now (only while a call of the subscription waits: see
    /// [`listen`](Self::listen)).
    listening: bool,
    /// The OS process that opened it: in a fork of that process it is left alone.
    process: u32,
}

impl std::fmt::Debug for ReaderConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderConn")
            .field("notified", &self.notified)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

fn no_answer() -> DbError {
    DbError::Other(format!(
        "no answer from the server within the reader's deadline ({REPLY_TIMEOUT:?} past its \
         wait): its connection is dropped"
    ))
}

fn ended() -> DbError {
    DbError::Other("the reader's connection ended".to_owned())
}

/// Drives `connection` as far as it goes without waiting: sends what the client queued, reads
/// what the server sent, counts the notifications. `Err` once the connection has ended (it
/// must not be polled again).
fn pump(
    connection: &mut Connection<Socket, NoTlsStream>,
    notified: &mut usize,
    cx: &mut Context<'_>,
) -> std::result::Result<(), DbError> {
    loop {
        match connection.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => *notified += 1,
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Err(e.into()),
            Poll::Ready(None) => return Err(ended()),
            Poll::Pending => return Ok(()),
        }
    }
}

impl ReaderConn {
    /// Connects and runs `session` (the reader's `SET`s, its `listeners` row), all before
    /// `deadline`. It does not listen yet.
    pub(crate) fn open(
        config: &tokio_postgres::Config,
        session: &str,
        deadline: Instant,
    ) -> std::result::Result<ReaderConn, DbError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Other(format!("cannot start the reader's runtime: {e}")))?;
        let connected = runtime.block_on(async {
            tokio::time::timeout_at(deadline.into(), config.connect(NoTls)).await
        });
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(no_answer()),
        };
        let mut conn = ReaderConn {
            client,
            connection,
            runtime,
            statements: HashMap::new(),
            notified: 0,
            broken: false,
            listening: false,
            process: std::process::id(),
        };
        conn.batch_execute(session, deadline)?;
        Ok(conn)
    }

    /// Whether it may be used: not broken, not closed, and opened by this process.
    pub(crate) fn is_usable(&self) -> bool {
        !self.broken && !self.client.is_closed() && !self.is_inherited()
    }

    /// Whether another OS process opened it: this one is a fork of that one.
    pub(crate) fn is_inherited(&self) -> bool {
        self.process != std::process::id()
    }

    /// Takes the notifications received so far (reading those the socket holds, without
    /// waiting): a read that begins now sees the commits they announce.
    pub(crate) fn take_notifications(&mut self) -> std::result::Result<(), DbError> {
        let Self {
            connection,
            runtime,
            notified,
            broken,
            ..
        } = self;
        if *broken {
            return Err(ended());
        }
        let pumped = runtime.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(pump(connection, notified, cx))
        }));
        *notified = 0;
        pumped.inspect_err(|_| *broken = true)
    }

    /// Notifications received since the last read began (for the tests).
    #[cfg(test)]
    pub(crate) fn notified(&self) -> usize {
        self.notified
    }

    /// Waits until a notification arrives (or one arrived since the last read began), or
    /// until `until`. `Err` when the connection ended meanwhile.
    pub(crate) fn wait(&mut self, until: Instant) -> std::result::Result<(), DbError> {
        let Self {
            connection,
            runtime,
            notified,
            broken,
            ..
        } = self;
        if *broken {
            return Err(ended());
        }
        let waited = runtime.block_on(async {
            tokio::time::timeout_at(
                until.into(),
                std::future::poll_fn(|cx| match pump(connection, notified, cx) {
                    Err(e) => Poll::Ready(Err(e)),
                    Ok(()) if *notified > 0 => Poll::Ready(Ok(())),
                    Ok(()) => Poll::Pending,
                }),
            )
            .await
        });
        match waited {
            Ok(Err(e)) => {
                *broken = true;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// The rows of `sql` (prepared once per connection), answered before `deadline`.
    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        deadline: Instant,
    ) -> std::result::Result<Vec<Row>, DbError> {
        let statement = self.prepare(sql, deadline)?;
        self.request(deadline, |client| client.query(&statement, params))
    }

    /// `LISTEN`s to `channel` (a quoted identifier) before `deadline`, unless it does already.
    ///
    /// A reader listens only while a call of its subscription waits, never between calls: a
    /// listening session is sent every notifying commit's notification as soon as it is idle,
    /// and one whose subscriber makes no call reads none of them. Once the socket's buffers
    /// are full its server process blocks sending, and the server's notification queue, which
    /// that process no longer advances, grows with every notifying commit of every session
    /// until `NOTIFY`, and every commit that notifies, fails (clarified 2026-12-07).
    pub(crate) fn listen(
        &mut self,
        channel: &str,
        deadline: Instant,
    ) -> std::result::Result<(), DbError> {
        if !self.listening {
            self.batch_execute(&format!("LISTEN {channel}"), deadline)?;
            self.listening = true;
        }
        Ok(())
    }

    /// Whether its session listens now.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening
    }

    /// Stops listening before `deadline` (see [`listen`](Self::listen)); the notifications
    /// that came meanwhile are dropped at the next read.
    pub(crate) fn unlisten(&mut self, deadline: Instant) -> std::result::Result<(), DbError> {
        if self.listening {
            self.batch_execute("UNLISTEN *", deadline)?;
            self.listening = false;
        }
        Ok(())
    }

    /// Runs `sql` (one or more statements, no parameters) before `deadline`.
    pub(crate) fn batch_execute(
        &mut self,
        sql: &str,
        deadline: Instant,
    ) -> std::result::Result<(), DbError> {
        self.request(deadline, |client| client.batch_execute(sql))
    }

    fn prepare(
        &mut self,
        sql: &'static str,
        deadline: Instant,
    ) -> std::result::Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.request(deadline, |client| client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs the request `make` builds on the client to its answer before `deadline`
    /// ([`block_until`]).
    fn request<'a, T, F>(
        &'a mut self,
        deadline: Instant,
        make: impl FnOnce(&'a Client) -> F,
    ) -> std::result::Result<T, DbError>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        let Self {
            client,
            connection,
            runtime,
            notified,
            broken,
            ..
        } = self;
        block_until(
            runtime,
            connection,
            notified,
            broken,
            deadline,
            make(client),
        )
    }
}

/// Runs `request` (a future of the client) to its answer, driving the connection meanwhile,
/// until `deadline`; past it, or when the connection ends, the connection is `broken`.
fn block_until<T>(
    runtime: &tokio::runtime::Runtime,
    connection: &mut Connection<Socket, NoTlsStream>,
    notified: &mut usize,
    broken: &mut bool,
    deadline: Instant,
    request: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> std::result::Result<T, DbError> {
    if *broken {
        return Err(ended());
    }
    let mut request = std::pin::pin!(request);
    let answered = runtime.block_on(async {
        tokio::time::timeout_at(
            deadline.into(),
            std::future::poll_fn(|cx| {
                // The connection first: it sends what the request queued and reads its answer.
                if let Err(e) = pump(connection, notified, cx) {
                    *broken = true;
                    return Poll::Ready(Err(e));
                }
                request.as_mut().poll(cx).map_err(DbError::from)
            }),
        )
        .await
    });
    // An error the server answered leaves the connection usable (one of the connection shows
    // in `pump`, or as the client closed: `is_usable`).
    answered.unwrap_or_else(|_| {
        *broken = true;
        Err(no_answer())
    })
}

/// Drops a reader's connection (closing its socket). One another OS process opened (this one
/// is its fork) is forgotten, never closed.
///
/// Its runtime is shut down in the background, not dropped: dropping a runtime panics on a
/// thread that drives an async runtime (a host's async code dropping a subscription), and
/// nothing runs on this one by itself (its connection is driven only while a call of the
/// reader blocks on it), so there is nothing to wait for. Clarified 2026-12-07: before, the
/// drop's panic was caught, its message printed, and the runtime left half dropped
/// (`pg/tests/async_drop.rs`).
pub(crate) fn discard(conn: ReaderConn) {
    if conn.is_inherited() {
        std::mem::forget(conn);
        return;
    }
    let ReaderConn {
        client,
        connection,
        runtime,
        ..
    } = conn;
    // The socket closes with the connection (its registration with the runtime's reactor
    // holds a handle of its own), before the runtime goes.
    drop(client);
    drop(connection);
    runtime.shutdown_background();
}
