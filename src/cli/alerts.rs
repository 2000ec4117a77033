//! `powerpulse alerts`: the days a topic or an agent stood out, newest
//! first; `--ack ID` acknowledges one. Offline it reads the database (an
//! acknowledgement goes through a `StoreActor`, the only writer); beside a
//! running server, through its API.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use actix::Actor;
use anyhow::{Context, Result, bail};
use chrono::NaiveDate;

use powerpulse::alerts::Alert;
use powerpulse::config::Settings;
use powerpulse::store::actor::{AcknowledgeAlert, StoreActor};

use super::Db;

/// What `alerts` was asked.
pub struct AlertsArgs {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub open: bool,
    pub ack: Option<String>,
    pub json: bool,
}

pub fn run(settings: &Settings, args: AlertsArgs) -> Result<ExitCode> {
    let db = Db::open(settings)?;
    if let Some(id) = &args.ack {
        let alert = match &db {
            Db::Remote(remote) => remote.acknowledge(id)?,
            Db::Local(store) => {
                let store = store.clone();
                let id = id.clone();
                actix_rt::System::new().block_on(async move {
                    let writer = StoreActor::new(store, 1, Duration::from_millis(100)).start();
                    writer
                        .send(AcknowledgeAlert {
                            id,
                            now: chrono::Utc::now(),
                        })
                        .await
                        .context("while acknowledging the alert")?
                        .context("while acknowledging the alert")
                })?
            }
        };
        let Some(alert) = alert else {
            bail!("no alert {id}");
        };
        println!("acknowledged: {}", alert.headline());
        return Ok(ExitCode::SUCCESS);
    }
    let date = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    let (from, to) = (date(args.from), date(args.to));
    let alerts = match &db {
        Db::Local(store) => store.alerts(from.as_deref(), to.as_deref(), args.open)?,
        Db::Remote(remote) => remote.alerts(from.as_deref(), to.as_deref(), args.open)?,
    };
    print_alerts(&alerts, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_alerts(alerts: &[Alert], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "alerts": alerts }))?;
        writeln!(out)?;
        return Ok(());
    }
    if alerts.is_empty() {
        writeln!(out, "no alerts")?;
    }
    for a in alerts {
        let state = if a.acknowledged {
            "acknowledged"
        } else {
            "open"
        };
        writeln!(out, "{}  {:<12}  {}", a.id, state, a.headline())?;
    }
    Ok(())
}
