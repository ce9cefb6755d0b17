//! `SessionRegistry`: the one owner of `user_auth_sessions`.
//!
//! Every change to a session goes through this actor's messages, which check
//! the transition before writing (a completed session cannot be completed
//! again, an expired one cannot complete). A timer expires overdue pending
//! sessions and refreshes the `lark_auth_sessions{state}` gauge.

use std::time::Duration;

use actix::prelude::*;

use crate::db::models::user_auth_session as sessions;
use crate::db::{Db, DbError};
use crate::domain::SessionState;
use crate::metrics::AUTH_SESSIONS;
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "session_registry";

/// How often overdue pending sessions are expired and gauges refreshed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Expire overdue pending sessions now; answers how many were expired.
#[derive(Message)]
#[rtype(result = "Result<usize, DbError>")]
pub struct ExpireOverdue;

pub struct SessionRegistry {
    db: Db,
    lifecycle: Lifecycle,
}

impl SessionRegistry {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            lifecycle: Lifecycle::new(NAME),
        }
    }
}

impl Managed for SessionRegistry {
    const NAME: &'static str = NAME;

    fn lifecycle(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }

    fn lifecycle_ref(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_INTERVAL, |_, ctx| {
            ctx.notify(ExpireOverdue);
        });
    }
}

crate::managed_actor!(SessionRegistry);

impl Handler<ExpireOverdue> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<usize, DbError>>;

    fn handle(&mut self, _: ExpireOverdue, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let sweep = async move {
            let (expired, counts) = db
                .write(|c| {
                    let expired = sessions::expire_overdue(c, crate::db::now())?;
                    Ok((expired, sessions::count_by_state(c)?))
                })
                .await?;
            if expired > 0 {
                tracing::info!(expired, "expired overdue authorization sessions");
            }
            for state in SessionState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(AUTH_SESSIONS, "state" => state.as_str()).set(n as f64);
            }
            Ok(expired)
        };
        Box::pin(sweep.into_actor(self).map(|result, act, _| {
            match &result {
                Ok(_) if act.lifecycle.state() != crate::supervise::ActorState::Running => {
                    act.lifecycle.running()
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "session sweep failed");
                    act.lifecycle.degraded(e);
                }
            }
            result
        }))
    }
}
