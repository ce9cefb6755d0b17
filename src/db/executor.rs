//! `DbExecutor`: the actors that run diesel, and `Db`, the handle to them.
//!
//! Diesel is blocking, so it must never run on an async arbiter: a slow
//! query there would stall every actor sharing the thread. The executors run
//! on a `SyncArbiter`, one thread per pooled connection; the arbiter rebuilds
//! one that stops, so they need no `Supervisor`.
//!
//! A message carries a closure over the query functions in `models`, and is
//! one transaction: a batch (say, a page of processed events) commits or
//! fails as a whole, so no half-written state is ever visible.
//!
//! [`Db`] also remembers whether the database is failing: the last write
//! (or any read) that met an outage sets it, the next write that commits
//! clears it. Work that would spend something the database must then
//! record, such as a single-use refresh token, asks first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::Connection;

use super::connection::{run_migrations, AnyConnection, Pool};
use super::DbError;

/// What a unit of work intends, so SQLite can take its write lock up front:
/// a deferred transaction that reads and then writes can fail with
/// `database is locked` however long the busy timeout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

type Work<R> = Box<dyn FnOnce(&mut AnyConnection) -> Result<R, DbError> + Send>;

/// Run `work` in one transaction.
pub struct Exec<R> {
    access: Access,
    work: Work<R>,
}

impl<R: Send + 'static> Message for Exec<R> {
    type Result = Result<R, DbError>;
}

/// One blocking database worker.
pub struct DbExecutor {
    pool: Pool,
}

impl Actor for DbExecutor {
    type Context = SyncContext<Self>;
}

impl<R: Send + 'static> Handler<Exec<R>> for DbExecutor {
    type Result = Result<R, DbError>;

    fn handle(&mut self, msg: Exec<R>, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.pool.get()?;
        let conn: &mut AnyConnection = &mut conn;
        match msg.access {
            Access::Read => conn.transaction(|c| (msg.work)(c)),
            Access::Write => write_transaction(conn, msg.work),
        }
    }
}

/// A write transaction. On SQLite it is `BEGIN IMMEDIATE … COMMIT`; the
/// transaction state lives in the inner connection, so nested `transaction`
/// calls made by `work` through `AnyConnection` become savepoints as usual.
fn write_transaction<R>(conn: &mut AnyConnection, work: Work<R>) -> Result<R, DbError> {
    let AnyConnection::Sqlite(c) = conn else {
        return conn.transaction(|c| work(c));
    };
    AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    let result = work(conn);
    if let AnyConnection::Sqlite(c) = conn {
        match &result {
            Ok(_) => AnsiTransactionManager::commit_transaction(c)?,
            Err(_) => AnsiTransactionManager::rollback_transaction(c)?,
        }
    }
    result
}

/// The handle the rest of the service uses. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    addr: Addr<DbExecutor>,
    pool: Pool,
    /// Set by an outage, cleared by a committed write.
    failing: Arc<AtomicBool>,
}

impl Db {
    /// Start one executor per pooled connection on a `SyncArbiter`.
    pub fn start(pool: Pool) -> Self {
        let threads = pool.max_size().max(1) as usize;
        let p = pool.clone();
        let addr = SyncArbiter::start(threads, move || DbExecutor { pool: p.clone() });
        Self {
            addr,
            pool,
            failing: Arc::default(),
        }
    }

    /// Run read-only work.
    pub async fn read<R, F>(&self, work: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<R, DbError> + Send + 'static,
    {
        self.exec(Access::Read, Box::new(work)).await
    }

    /// Run work that writes, in one transaction.
    pub async fn write<R, F>(&self, work: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<R, DbError> + Send + 'static,
    {
        self.exec(Access::Write, Box::new(work)).await
    }

    async fn exec<R: Send + 'static>(&self, access: Access, work: Work<R>) -> Result<R, DbError> {
        let result = match self.addr.send(Exec { access, work }).await {
            Ok(r) => r,
            Err(e) => Err(e.into()),
        };
        match &result {
            Err(e) if e.is_outage() => self.failing.store(true, Ordering::Relaxed),
            // A read succeeds on SQLite while another process holds the
            // write lock: only a commit shows writes work again.
            Ok(_) if access == Access::Write => self.failing.store(false, Ordering::Relaxed),
            _ => {}
        }
        result
    }

    /// Did the database's last answer say it is unavailable (and has no
    /// write committed since)?
    pub fn writes_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Is the database reachable right now?
    pub async fn ping(&self) -> Result<(), DbError> {
        self.read(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute("SELECT 1").map_err(DbError::from)
        })
        .await
    }

    /// Apply pending migrations.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        self.exec(Access::Read, Box::new(run_migrations)).await
    }

    /// Connections open and idle, for `/admin/actors`.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}
