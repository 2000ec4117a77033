//! `AlertActor`: the wiring of alert checks and digests, one at a time.
//!
//! `CheckAlerts` (after each completed upload, through [`AlertTrigger`];
//! hourly in `serve`) reads the recent days' figures from the
//! `StoreReader`, asks [`super::rule::judge`], has the `StoreActor` keep the
//! alerts not raised before, and queues each new one as an `insight.alert`
//! webhook. `SendDigest` (when `notify.digest` falls due) reads the
//! period's insights and the open alerts, and queues an `insight.digest`,
//! once per period. Both are `AtomicResponse`s: a check never overlaps
//! another, so an alert is raised once. `FlushAlerts` is answered once
//! everything sent before it is done (at shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use chrono::{DateTime, Days, Utc};

use super::rule;
use crate::config::{AlertSettings, NotifySettings};
use crate::notify::actor::Notifier;
use crate::notify::digest;
use crate::notify::event::{AlertEvent, Event};
use crate::store::StoreError;
use crate::store::actor::{
    GetAlertWindow, GetInsights, LastDigest, ListAlerts, RaiseAlerts, RecordDigest, StoreActor,
    StoreReader,
};
use crate::store::stats::{InsightsQuery, day_number};

/// Looks for alerts in the recent days now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckAlerts;

/// Sends the digest that fell due at `due`, unless its period's was sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendDigest {
    pub due: DateTime<Utc>,
}

/// Answered once every check and digest sent before it is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushAlerts;

pub struct AlertActor {
    reader: Addr<StoreReader>,
    writer: Addr<StoreActor>,
    /// Where alerts and digests go, when webhooks are on.
    notifier: Option<Notifier>,
    alerts: AlertSettings,
    notify: NotifySettings,
    /// A check is queued (see [`AlertTrigger`]).
    queued: Arc<AtomicBool>,
    stats: Arc<super::AlertStats>,
}

/// What the pipeline holds to ask for a check when an upload completes,
/// without waiting: at most one check is queued at a time (a check judges
/// every recent day, so one queued covers every upload completed before it
/// starts).
#[derive(Clone)]
pub struct AlertTrigger {
    to: Recipient<CheckAlerts>,
    queued: Arc<AtomicBool>,
}

impl AlertTrigger {
    pub fn upload_completed(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) && self.to.try_send(CheckAlerts).is_err() {
            self.queued.store(false, Ordering::Release);
            tracing::debug!("alert check not queued: the alerts actor has stopped");
        }
    }
}

impl AlertActor {
    pub fn new(
        reader: Addr<StoreReader>,
        writer: Addr<StoreActor>,
        notifier: Option<Notifier>,
        alerts: AlertSettings,
        notify: NotifySettings,
        stats: Arc<super::AlertStats>,
    ) -> Self {
        Self {
            reader,
            writer,
            notifier,
            alerts,
            notify,
            queued: Arc::default(),
            stats,
        }
    }

    /// Starts it; answers its address and the pipeline's trigger.
    pub fn launch(self) -> (Addr<Self>, AlertTrigger) {
        let queued = self.queued.clone();
        let addr = self.start();
        let trigger = AlertTrigger {
            to: addr.clone().recipient(),
            queued,
        };
        (addr, trigger)
    }
}

impl Actor for AlertActor {
    type Context = Context<Self>;
}

/// A mailbox error is the store shutting down.
fn closed(_: MailboxError) -> StoreError {
    StoreError::Closed
}

impl Handler<CheckAlerts> for AlertActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: CheckAlerts, _: &mut Self::Context) -> Self::Result {
        self.queued.store(false, Ordering::Release);
        let (reader, writer) = (self.reader.clone(), self.writer.clone());
        let settings = self.alerts.clone();
        let notifier = self.notifier.clone();
        let dashboard = self.notify.dashboard_url.clone();
        let stats = self.stats.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if !settings.enabled {
                    return;
                }
                let check = async {
                    let Some(window) = reader
                        .send(GetAlertWindow {
                            settings: settings.clone(),
                        })
                        .await
                        .map_err(closed)??
                    else {
                        return Ok(Vec::new());
                    };
                    let detected = rule::judge(&window.series, window.from, window.to, &settings);
                    writer
                        .send(RaiseAlerts {
                            detected,
                            now: Utc::now(),
                        })
                        .await
                        .map_err(closed)?
                };
                match check.await {
                    Ok(raised) => {
                        if !raised.is_empty() {
                            tracing::info!(alerts = raised.len(), "alerts raised");
                        }
                        stats.count_check(raised.len());
                        if let Some(notifier) = &notifier {
                            for alert in raised {
                                notifier.send(Event::Alert(AlertEvent::new(
                                    alert,
                                    dashboard.as_deref(),
                                )));
                            }
                        }
                    }
                    Err(StoreError::Closed) => {}
                    Err(e) => tracing::error!(error = %e, "alert check failed"),
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<SendDigest> for AlertActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: SendDigest, _: &mut Self::Context) -> Self::Result {
        let (reader, writer) = (self.reader.clone(), self.writer.clone());
        let notify = self.notify.clone();
        let notifier = self.notifier.clone();
        let stats = self.stats.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let Some(notifier) = notifier else { return };
                let schedule = notify.digest;
                let (from, to) = digest::period(schedule, msg.due);
                let send = async {
                    let last = reader
                        .send(LastDigest { schedule })
                        .await
                        .map_err(closed)??;
                    if last.is_some_and(|d| d >= day_number(to)) {
                        return Ok(false);
                    }
                    let span = Days::new((to - from).num_days() as u64 + 1);
                    let insights = |from, to| {
                        reader.send(GetInsights {
                            query: InsightsQuery {
                                from: Some(from),
                                to: Some(to),
                                ..Default::default()
                            },
                        })
                    };
                    let now = insights(from, to).await.map_err(closed)??;
                    let before = insights(from - span, to - span).await.map_err(closed)??;
                    let open = reader
                        .send(ListAlerts {
                            from: None,
                            to: None,
                            open: true,
                        })
                        .await
                        .map_err(closed)??;
                    notifier.send(Event::Digest(digest::build(
                        &notify,
                        (from, to),
                        &now,
                        &before,
                        &open,
                    )));
                    writer
                        .send(RecordDigest {
                            schedule,
                            day: day_number(to),
                        })
                        .await
                        .map_err(closed)??;
                    Ok::<_, StoreError>(true)
                };
                match send.await {
                    Ok(true) => {
                        stats.count_digest();
                        tracing::info!(%from, %to, "digest sent");
                    }
                    Ok(false) | Err(StoreError::Closed) => {}
                    Err(e) => tracing::error!(error = %e, "digest failed"),
                }
            }
            .into_actor(self),
        ))
    }
}

impl Handler<FlushAlerts> for AlertActor {
    type Result = ();
    fn handle(&mut self, _: FlushAlerts, _: &mut Self::Context) {}
}
