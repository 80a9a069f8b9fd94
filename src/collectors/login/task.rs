//! The collector task: polls the followed files and sends their logins.

use super::{AUTH_LOG, BTMP, COLLECTOR, LoginFollower, LoginOptions, SECURE, WTMP};
use crate::collectors::Context;
use crate::event::{CollectorHealth, Event, Payload};
use crate::text::error_causes;

/// The login collector as the registry lists it: [`run`] as a task.
pub struct LoginCollector;

impl crate::collectors::Triggered for LoginCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<crate::collectors::Running> {
        Ok(crate::collectors::Running::task(run(ctx)))
    }
}

/// The login collector's task, with default options: follows the sources until `ctx.cancel`.
/// Emits one `Login` event per login, failure, sudo or su use; a `CollectorStatus` (Degraded)
/// when no source exists, and Up when one appears.
pub async fn run(ctx: Context) {
    run_with(ctx, LoginOptions::default()).await
}

/// [`run`] with explicit options (tests use a short poll).
pub async fn run_with(ctx: Context, opts: LoginOptions) {
    let host = ctx.host.clone();
    let state_dir = ctx.state_dir.clone();
    let first_start = opts.first_start;
    let opened =
        tokio::task::spawn_blocking(move || LoginFollower::open(host, &state_dir, first_start))
            .await;
    let Ok(mut follower) = opened else {
        ctx.metrics.error(COLLECTOR, "panic");
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Down,
            "opening the login sources failed",
            None,
        );
        return;
    };
    let mut degraded = false;
    let mut save_failed = false;
    loop {
        // Save, then read: the positions saved are those of events already handed over (a
        // crash in between repeats a few logins, never loses one). The first save also fixes
        // the first start's choice, so a restart before any login does not make it again.
        let joined = tokio::task::spawn_blocking(move || {
            let saved = follower.save();
            let batch = follower.poll();
            (follower, saved, batch)
        })
        .await;
        let Ok((f, saved, batch)) = joined else {
            ctx.metrics.error(COLLECTOR, "panic");
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Down,
                "reading the login sources failed",
                None,
            );
            return;
        };
        follower = f;
        match saved {
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "state_write");
                if !save_failed {
                    tracing::warn!(collector = COLLECTOR, error = %e, cause = %error_causes(&e), "cannot save login positions; a restart may repeat or skip logins");
                }
                save_failed = true;
            }
            Ok(()) => save_failed = false,
        }
        let present = follower.present();
        if present.is_empty() != degraded {
            degraded = present.is_empty();
            if degraded {
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Degraded,
                    format!(
                        "no login source: {WTMP}, {BTMP}, {AUTH_LOG}, {SECURE} and the journal are all missing"
                    ),
                    Some("checking for them every poll"),
                );
            } else {
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Up,
                    format!("following {}", present.join(", ")),
                    None,
                );
            }
        }
        for _ in 0..batch.malformed {
            ctx.metrics.error(COLLECTOR, "malformed_record");
        }
        for _ in 0..batch.read_errors {
            ctx.metrics.error(COLLECTOR, "read");
        }
        for _ in 0..batch.skipped {
            ctx.metrics.error(COLLECTOR, "rotated_unread");
        }
        for _ in 0..batch.journal_corrupt {
            ctx.metrics.error(COLLECTOR, "journal_corrupt");
        }
        for _ in 0..batch.journal_skipped {
            ctx.metrics.error(COLLECTOR, "journal_field_skipped");
        }
        for login in batch.logins {
            let event = Event::new(Payload::Login(vec![login]));
            tokio::select! {
                sent = ctx.emit(COLLECTOR, event) => if !sent { return },
                // Stopping while the pipeline is full: this batch is read again next start.
                _ = ctx.cancel.cancelled() => return,
            }
        }
        if !batch.more {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = tokio::time::sleep(opts.poll) => {}
            }
        } else if ctx.cancel.is_cancelled() {
            break;
        }
    }
    // sshd lines held back to count one attempt once: hand them over now, without waiting
    // (the pipeline may be stopping too).
    let (follower, held) = match tokio::task::spawn_blocking(move || {
        let held = follower.flush_held();
        (follower, held)
    })
    .await
    {
        Ok(r) => r,
        Err(_) => return,
    };
    for login in held {
        if !ctx.emit_now(COLLECTOR, Event::new(Payload::Login(vec![login]))) {
            break;
        }
    }
    let mut follower = follower;
    let saved = tokio::task::spawn_blocking(move || follower.save()).await;
    if let Ok(Err(e)) = saved {
        ctx.metrics.error(COLLECTOR, "state_write");
        tracing::warn!(collector = COLLECTOR, error = %e, cause = %error_causes(&e), "cannot save login positions at shutdown");
    }
}
