//! The garage-down drill's second load: attachment uploads through the balancer while Garage
//! goes down and comes back (issue #15, drill 7). loadgen's mix is tickets only, so the drill
//! sends its own: one ticket of its own user, small files at a fixed rate over the measured
//! window, every answer kept with its second. After the run every acknowledged upload (201) is
//! audited by identity: its attachment row, exactly one `ticket.attachment_added` event, sent,
//! processed once, one notification.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// Uploads per second.
pub const RATE: f64 = 10.0;
/// Bytes per file: small, so the drill measures availability, not bandwidth.
const FILE_BYTES: usize = 4096;
/// One upload's deadline (the API's own upload timeout is longer; a hang is a failure).
const TIMEOUT: Duration = Duration::from_secs(10);
/// An upload's errors may last this long after the heal (the API's S3 client reconnecting).
pub const SLACK_S: f64 = 5.0;

/// One upload's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// Seconds into the measured window when it was due.
    pub at_s: f64,
    /// None: no answer (transport error or timeout).
    pub status: Option<u16>,
    /// The attachment a 201 returned.
    pub attachment: Option<Uuid>,
}

/// Sends `RATE` uploads per second from `start` (an `Instant` at the window's start) for
/// `window_s`, each on its own task; every answer, in the order they were due.
pub async fn run(target: &str, start: Instant, window_s: f64) -> anyhow::Result<Vec<Sent>> {
    let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
    let user = format!("drill-uploader-{}", Uuid::new_v4().simple());
    let ticket = create_ticket(&client, target, &user).await?;
    let url = format!("{target}/v1/tickets/{ticket}/attachments");
    let count = (window_s * RATE) as usize;
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let at_s = n as f64 / RATE;
        tokio::time::sleep_until((start + Duration::from_secs_f64(at_s)).into()).await;
        let (client, url, user) = (client.clone(), url.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let (status, attachment) = upload(&client, &url, &user, n).await;
            Sent {
                at_s,
                status,
                attachment,
            }
        }));
    }
    let mut sent = Vec::with_capacity(count);
    for t in tasks {
        sent.push(t.await?);
    }
    Ok(sent)
}

async fn create_ticket(client: &reqwest::Client, target: &str, user: &str) -> anyhow::Result<Uuid> {
    let res = client
        .post(format!("{target}/v1/tickets"))
        .header(contracts::headers::USER_ID, user)
        .json(&contracts::CreateTicketRequest {
            title: "drill uploads".into(),
            description: "the garage-down drill's uploads".into(),
        })
        .send()
        .await
        .context("creating the uploads' ticket")?;
    if res.status() != 201 {
        bail!("creating the uploads' ticket answered {}", res.status());
    }
    let body: serde_json::Value = res.json().await?;
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the created ticket has no id")
}

async fn upload(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    n: usize,
) -> (Option<u16>, Option<Uuid>) {
    let part = reqwest::multipart::Part::bytes(vec![(n % 251) as u8; FILE_BYTES])
        .file_name(format!("drill-{n}.bin"))
        .mime_str("application/octet-stream")
        .expect("a valid content type");
    let form = reqwest::multipart::Form::new().part("file", part);
    let Ok(res) = client
        .post(url)
        .header(contracts::headers::USER_ID, user)
        .multipart(form)
        .send()
        .await
    else {
        return (None, None);
    };
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let id = body["id"].as_str().and_then(|s| s.parse().ok());
    (Some(status), id.filter(|_| status == 201))
}

/// What the uploads saw and what became of the acknowledged ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadsOut {
    pub sent: u64,
    /// Answered 201 with an attachment id.
    pub acknowledged: u64,
    /// Answered 503 (the object store is unavailable: the expected answer during the outage).
    pub unavailable: u64,
    /// Any other answer, or none.
    pub failed: u64,
    /// First and last second (of the window) with an upload not acknowledged.
    pub error_window_s: Option<(f64, f64)>,
    /// Acknowledged after the heal + slack: uploads came back.
    pub acknowledged_after_heal: u64,
    /// Acknowledged uploads with no attachment row or no event.
    pub lost: i64,
    /// Acknowledged uploads with more than one event or notification.
    pub duplicated: i64,
    /// Acknowledged uploads whose event was not processed when the audit stopped waiting.
    pub unconfirmed: i64,
}

impl UploadsOut {
    /// The answers, counted; the audit's fields stay zero.
    pub fn tally(sent: &[Sent], heal_at_s: f64) -> UploadsOut {
        let mut o = UploadsOut {
            sent: sent.len() as u64,
            ..UploadsOut::default()
        };
        for s in sent {
            match (s.status, s.attachment) {
                (Some(201), Some(_)) => {
                    o.acknowledged += 1;
                    if s.at_s >= heal_at_s + SLACK_S {
                        o.acknowledged_after_heal += 1;
                    }
                    continue;
                }
                (Some(503), _) => o.unavailable += 1,
                _ => o.failed += 1,
            }
            let (a, b) = o.error_window_s.unwrap_or((s.at_s, s.at_s));
            o.error_window_s = Some((a.min(s.at_s), b.max(s.at_s)));
        }
        o
    }

    /// The expectations this missed: answers other than 201 only during the outage (and 503
    /// then), uploads working again after it, and every acknowledged one delivered once.
    pub fn misses(&self, fault_at_s: f64, heal_at_s: f64) -> Vec<String> {
        let mut m = Vec::new();
        if let Some((a, b)) = self.error_window_s
            && (a < fault_at_s.floor() || b >= heal_at_s + SLACK_S)
        {
            m.push(format!(
                "uploads failed in seconds {a:.1}–{b:.1}, outside the outage {fault_at_s:.1}–{heal_at_s:.1} s + {SLACK_S} s"
            ));
        }
        if self.failed > 0 {
            m.push(format!(
                "{} uploads got neither 201 nor 503 (a wrong status, a hang or a dropped connection)",
                self.failed
            ));
        }
        if self.acknowledged_after_heal == 0 {
            m.push("no upload succeeded after the heal".into());
        }
        if self.lost > 0 || self.duplicated > 0 || self.unconfirmed > 0 {
            m.push(format!(
                "uploads' audit: {} lost, {} duplicated, {} unconfirmed (expected 0, 0, 0)",
                self.lost, self.duplicated, self.unconfirmed
            ));
        }
        m
    }

    /// One line for the scoreboard.
    pub fn summary(&self) -> String {
        let errors = match self.error_window_s {
            Some((a, b)) => format!(
                "{} 503 and {} other in s {a:.0}–{b:.0}",
                self.unavailable, self.failed
            ),
            None => "none failed".into(),
        };
        format!(
            "uploads: {}/{} acknowledged, {errors}, {} lost, {} dup, {} unconfirmed",
            self.acknowledged, self.sent, self.lost, self.duplicated, self.unconfirmed
        )
    }
}

/// Per acknowledged attachment: its row, its events, how many were sent, processed and
/// notified.
const AUDIT: &str = "SELECT a.id,
        EXISTS (SELECT 1 FROM attachments t WHERE t.id = a.id) AS stored,
        count(o.event_id) AS events,
        count(o.event_id) FILTER (WHERE o.status = 'sent') AS sent,
        count(p.event_id) AS processed,
        coalesce(sum((SELECT count(*) FROM notifications n WHERE n.event_id = o.event_id)), 0)::bigint AS notified
     FROM unnest($1::uuid[]) AS a(id)
     LEFT JOIN outbox_events o
       ON o.event_type = 'ticket.attachment_added' AND o.payload->>'attachment_id' = a.id::text
     LEFT JOIN processed_events p ON p.event_id = o.event_id
     GROUP BY a.id";

#[derive(sqlx::FromRow)]
struct Row {
    stored: bool,
    events: i64,
    sent: i64,
    processed: i64,
    notified: i64,
}

/// Audits the acknowledged uploads by identity, waiting up to `wait` for the pipeline to
/// deliver them: lost (no row or no event), duplicated (two events or notifications),
/// unconfirmed (not processed when the wait ended).
pub async fn audit(
    pool: &PgPool,
    sent: &[Sent],
    out: &mut UploadsOut,
    wait: Duration,
) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = sent.iter().filter_map(|s| s.attachment).collect();
    let deadline = Instant::now() + wait;
    loop {
        let rows: Vec<Row> = sqlx::query_as(AUDIT).bind(&ids).fetch_all(pool).await?;
        out.lost = rows.iter().filter(|r| !r.stored || r.events == 0).count() as i64;
        out.duplicated = rows
            .iter()
            .filter(|r| r.events > 1 || r.notified > 1)
            .count() as i64;
        out.unconfirmed = rows
            .iter()
            .filter(|r| {
                r.stored && r.events == 1 && (r.sent == 0 || r.processed == 0 || r.notified == 0)
            })
            .count() as i64;
        if out.unconfirmed == 0 || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(at_s: f64, status: Option<u16>) -> Sent {
        Sent {
            at_s,
            status,
            attachment: (status == Some(201)).then(Uuid::now_v7),
        }
    }

    #[test]
    fn refusals_inside_the_outage_pass_and_outside_it_miss() {
        let ok: Vec<Sent> = [
            sent(1.0, Some(201)),
            sent(10.5, Some(503)),
            sent(29.0, Some(503)),
            sent(40.0, Some(201)),
        ]
        .into();
        let out = UploadsOut::tally(&ok, 30.0);
        assert_eq!((out.acknowledged, out.unavailable, out.failed), (2, 2, 0));
        assert_eq!(out.error_window_s, Some((10.5, 29.0)));
        assert!(
            out.misses(10.0, 30.0).is_empty(),
            "{:?}",
            out.misses(10.0, 30.0)
        );

        let late = [sent(36.0, Some(503)), sent(40.0, Some(201))];
        assert_eq!(UploadsOut::tally(&late, 30.0).misses(10.0, 30.0).len(), 1);
        let early = [sent(9.0, Some(503)), sent(40.0, Some(201))];
        assert_eq!(UploadsOut::tally(&early, 30.0).misses(10.0, 30.0).len(), 1);
    }

    #[test]
    fn a_hang_a_wrong_status_or_no_recovery_misses() {
        let hang = [sent(15.0, None), sent(40.0, Some(201))];
        assert_eq!(UploadsOut::tally(&hang, 30.0).misses(10.0, 30.0).len(), 1);
        let wrong = [sent(15.0, Some(500)), sent(40.0, Some(201))];
        assert_eq!(UploadsOut::tally(&wrong, 30.0).failed, 1);
        let never_back = [sent(1.0, Some(201)), sent(20.0, Some(503))];
        let m = UploadsOut::tally(&never_back, 30.0).misses(10.0, 30.0);
        assert_eq!(m, ["no upload succeeded after the heal"]);
    }
}
