//! `UserInfoSync`: the actor that owns user-info sync runs.
//!
//! It starts a run when `USER_INFO_SYNC_SCHEDULE` comes round (if
//! `USER_INFO_SYNC_ENABLED`) or when an operator asks (`POST /admin/sync`),
//! and allows one at a time in this process: a second request while one
//! runs is refused with the running run's id. Across replicas on PostgreSQL
//! the run itself takes an advisory lock (see [`super::replica_lock`]), so
//! one replica works and the others record a skipped run.
//!
//! The run is spawned on the runtime rather than in the actor's context, so
//! an actor restart does not cut a run short; the run reports its end with
//! [`RunEnded`].

use std::sync::Arc;

use actix::prelude::*;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::error::SyncError;
use super::run_view::{SyncRunView, Trigger};
use super::runner::{Progress, SyncRunner};
use super::schedule::CronSchedule;
use crate::db::models::sync_run;
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "user_info_sync";

/// Start a run now; answers its id, or [`SyncError::AlreadyRunning`].
#[derive(Message)]
#[rtype(result = "Result<i64, SyncError>")]
pub struct StartSync {
    pub trigger: Trigger,
}

/// A run's progress; `None` when there is no such run.
#[derive(Message)]
#[rtype(result = "Result<Option<SyncRunView>, SyncError>")]
pub struct GetRun {
    pub id: i64,
}

/// A run spawned by this actor has ended.
#[derive(Message)]
#[rtype(result = "()")]
struct RunEnded {
    id: i64,
}

pub struct UserInfoSync {
    runner: SyncRunner,
    /// `None` when the scheduled sync is off.
    schedule: Option<CronSchedule>,
    scheduler: Option<JobScheduler>,
    /// The id of the run in progress, if any.
    running: Option<i64>,
    lifecycle: Lifecycle,
}

impl UserInfoSync {
    pub fn new(runner: SyncRunner, schedule: Option<CronSchedule>) -> Self {
        Self {
            runner,
            schedule,
            scheduler: None,
            running: None,
            lifecycle: Lifecycle::new(NAME),
        }
    }

    /// Start the cron job. It lives as long as the process: the actor's
    /// address survives restarts, so the job's address stays good.
    fn schedule_job(&mut self, ctx: &mut Context<Self>) {
        let Some(schedule) = self.schedule.clone() else {
            return;
        };
        if self.scheduler.is_some() {
            return;
        }
        let addr = ctx.address();
        let start = async move {
            let scheduler = JobScheduler::new().await?;
            let job = Job::new_async(schedule.scheduler_expr(), move |_, _| {
                let addr = addr.clone();
                Box::pin(async move {
                    match addr
                        .send(StartSync {
                            trigger: Trigger::Cron,
                        })
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "scheduled user-info sync not started")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduled user-info sync: actor unavailable")
                        }
                    }
                })
            })?;
            scheduler.add(job).await?;
            scheduler.start().await?;
            Ok::<_, tokio_cron_scheduler::JobSchedulerError>(scheduler)
        };
        ctx.wait(start.into_actor(self).map(move |result, act, _| match result {
            Ok(scheduler) => {
                tracing::info!(schedule = %act.schedule.as_ref().map(ToString::to_string).unwrap_or_default(), "user-info sync scheduled (UTC)");
                act.scheduler = Some(scheduler);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not schedule the user-info sync");
                act.lifecycle.degraded(format!("scheduler: {e}"));
            }
        }));
    }
}

impl Managed for UserInfoSync {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.schedule_job(ctx);
    }

    fn in_flight(&self) -> u64 {
        u64::from(self.running.is_some())
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "schedule": self.schedule.as_ref().map(ToString::to_string),
            "running_run": self.running,
        })
    }
}

crate::managed_actor!(UserInfoSync);

impl Handler<StartSync> for UserInfoSync {
    type Result = AtomicResponse<Self, Result<i64, SyncError>>;

    fn handle(&mut self, msg: StartSync, _: &mut Context<Self>) -> Self::Result {
        if let Some(id) = self.running {
            return AtomicResponse::new(Box::pin(fut::ready(Err(SyncError::AlreadyRunning(id)))));
        }
        // Atomic: no other StartSync is handled until the row exists and
        // `running` is set, so two requests cannot both start a run.
        let runner = self.runner.clone();
        let begin = async move { runner.begin(msg.trigger).await };
        AtomicResponse::new(Box::pin(begin.into_actor(self).map(|result, act, ctx| {
            let id = result?;
            act.running = Some(id);
            let runner = act.runner.clone();
            let addr = ctx.address();
            actix_rt::spawn(async move {
                runner.run(id, Arc::new(Progress::default())).await;
                addr.do_send(RunEnded { id });
            });
            Ok(id)
        })))
    }
}

impl Handler<RunEnded> for UserInfoSync {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, _: &mut Context<Self>) {
        if self.running == Some(msg.id) {
            self.running = None;
        }
    }
}

impl Handler<GetRun> for UserInfoSync {
    type Result = ResponseFuture<Result<Option<SyncRunView>, SyncError>>;

    fn handle(&mut self, msg: GetRun, _: &mut Context<Self>) -> Self::Result {
        let db = self.runner.db().clone();
        Box::pin(async move {
            let row = db.read(move |c| sync_run::find(c, msg.id)).await?;
            Ok(row.map(SyncRunView::from))
        })
    }
}
