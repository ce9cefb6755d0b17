//! Re-encrypting every stored token under the current key, for
//! `lark-service rekey` after a key rotation.
//!
//! Every sealed column ([`SealedColumn::ALL`]) is walked by row key in
//! batches. Each value is opened (with `ENCRYPTION_KEY` or any of
//! `ENCRYPTION_KEY_PREVIOUS`); one not under the current key in today's
//! format is sealed again, and written back only if the row still holds the
//! value that was read, so a token stored meanwhile by a running replica is
//! never overwritten. Each batch is one transaction. Nothing else is
//! touched: the token is the same, so no refresh claim or token state
//! changes.
//!
//! The walk is safe to interrupt and run again: values already under the
//! current key are only opened (which also proves they open). A pass that
//! resealed anything, or lost a race, is followed by another, until one
//! finds nothing left under an old key (at most [`MAX_PASSES`]), so values
//! written meanwhile by a replica still sealing with an old key are caught.
//!
//! A value no configured key opens is listed, never changed, unless the
//! operator asks to forget such values: then it is dropped, and a completed
//! session that held it moves to `reauth_required` with the reason, as the
//! service would do on its first use.

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::Connection;

use super::vault::{SealedColumn, Slot, Vault, VaultError};
use crate::db::models::sealed_value;
use crate::db::{AnyConnection, DbError};

/// Values read and rewritten per transaction.
pub const BATCH: i64 = 200;
/// Passes before giving up on values that keep appearing under an old key
/// (a replica still sealing with it).
pub const MAX_PASSES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot seal a value again: {0}")]
    Seal(VaultError),
}

/// What to do.
#[derive(Debug, Clone, Copy)]
pub struct RekeyOptions {
    pub batch: i64,
    /// Drop values no configured key opens (see the module docs).
    pub forget_unreadable: bool,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        Self {
            batch: BATCH,
            forget_unreadable: false,
        }
    }
}

/// Counts of the pass in progress, read by the progress display while the
/// walk runs on a blocking thread.
#[derive(Debug, Default)]
pub struct Progress {
    pub pass: AtomicU64,
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub resealed: AtomicU64,
    pub unreadable: AtomicU64,
}

/// A value no configured key opens.
#[derive(Debug, Clone)]
pub struct UnreadableValue {
    pub column: SealedColumn,
    /// The row's key: a session id, a device profile.
    pub row: String,
    pub error: VaultError,
}

/// What a whole run did.
#[derive(Debug, Default)]
pub struct Report {
    pub passes: u32,
    /// Values sealed again under the current key, over all passes.
    pub resealed: u64,
    /// Values already under the current key when the run began.
    pub current: u64,
    /// Values no key opens, as the last pass found them.
    pub unreadable: Vec<UnreadableValue>,
    /// Unreadable values dropped (with `forget_unreadable`).
    pub forgotten: u64,
    /// Sessions moved to `reauth_required` because a value was dropped.
    pub sessions_reauth: u64,
    /// Values still under an old key after the last pass.
    pub left: u64,
}

impl Report {
    /// Every stored value opens with the current key alone.
    pub fn is_complete(&self) -> bool {
        self.left == 0 && self.unreadable.is_empty()
    }
}

/// One pass's findings.
#[derive(Default)]
struct Pass {
    /// Readable values found under an old key (or in the old format).
    old: u64,
    resealed: u64,
    current: u64,
    unreadable: Vec<UnreadableValue>,
    forgotten: u64,
    sessions_reauth: u64,
}

/// Re-encrypt every stored value under `vault`'s current key.
pub fn rekey(
    conn: &mut AnyConnection,
    vault: &Vault,
    options: RekeyOptions,
    progress: &Progress,
) -> Result<Report, RekeyError> {
    let mut report = Report::default();
    loop {
        report.passes += 1;
        let pass = run_pass(conn, vault, options, progress, report.passes)?;
        report.resealed += pass.resealed;
        report.forgotten += pass.forgotten;
        report.sessions_reauth += pass.sessions_reauth;
        if report.passes == 1 {
            report.current = pass.current;
        }
        report.unreadable = pass.unreadable;
        // A pass that found nothing old proves nothing is left; one that
        // resealed (or lost races) is checked by another.
        report.left = pass.old - pass.resealed;
        if pass.old == 0 || report.passes >= MAX_PASSES {
            return Ok(report);
        }
    }
}

fn run_pass(
    conn: &mut AnyConnection,
    vault: &Vault,
    options: RekeyOptions,
    progress: &Progress,
    number: u32,
) -> Result<Pass, RekeyError> {
    let mut total = 0;
    for column in SealedColumn::ALL {
        total += sealed_value::count(conn, column)?;
    }
    progress.pass.store(u64::from(number), Ordering::Relaxed);
    progress
        .total
        .store(u64::try_from(total).unwrap_or(0), Ordering::Relaxed);
    for counter in [&progress.done, &progress.resealed, &progress.unreadable] {
        counter.store(0, Ordering::Relaxed);
    }
    let mut pass = Pass::default();
    for column in SealedColumn::ALL {
        let mut after = String::new();
        loop {
            let page = sealed_value::page(conn, column, &after, options.batch)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.clone();
            let n = page.len() as u64;
            batch(conn, vault, options, column, page, &mut pass)?;
            progress.done.fetch_add(n, Ordering::Relaxed);
            progress.resealed.store(pass.resealed, Ordering::Relaxed);
            progress
                .unreadable
                .store(pass.unreadable.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(pass)
}

/// A write a batch decided on.
enum Write {
    Reseal {
        row: String,
        old: String,
        new: String,
    },
    Forget {
        row: String,
        old: String,
        reason: String,
    },
}

/// Open each value of one page; write back, in one transaction, those to
/// reseal (and, if asked, drop those no key opens).
fn batch(
    conn: &mut AnyConnection,
    vault: &Vault,
    options: RekeyOptions,
    column: SealedColumn,
    page: Vec<(String, String)>,
    pass: &mut Pass,
) -> Result<(), RekeyError> {
    let mut writes = Vec::new();
    for (row, old) in page {
        let slot = Slot::new(column, &row);
        match vault.open(slot, &old) {
            Ok(_) if vault.is_current(&old) => pass.current += 1,
            Ok(plain) => {
                pass.old += 1;
                let new = vault.seal(slot, &plain).map_err(RekeyError::Seal)?;
                writes.push(Write::Reseal { row, old, new });
            }
            Err(error) if options.forget_unreadable && error.unreadable().is_some() => {
                let reason = error.session_reason();
                writes.push(Write::Forget { row, old, reason });
            }
            Err(error) => pass.unreadable.push(UnreadableValue { column, row, error }),
        }
    }
    if writes.is_empty() {
        return Ok(());
    }
    let (resealed, forgotten, sessions) = conn.transaction(|c| {
        let (mut resealed, mut forgotten, mut sessions) = (0, 0, 0);
        for write in &writes {
            match write {
                Write::Reseal { row, old, new } => {
                    if sealed_value::replace(c, column, row, old, Some(new))? {
                        resealed += 1;
                    }
                }
                Write::Forget { row, old, reason } => {
                    if sealed_value::replace(c, column, row, old, None)? {
                        forgotten += 1;
                        if column.table() == SealedColumn::UserAccessToken.table()
                            && sealed_value::session_needs_reauth(c, row, reason)?
                        {
                            sessions += 1;
                        }
                    }
                }
            }
        }
        Ok::<_, DbError>((resealed, forgotten, sessions))
    })?;
    pass.resealed += resealed;
    pass.forgotten += forgotten;
    pass.sessions_reauth += sessions;
    Ok(())
}
