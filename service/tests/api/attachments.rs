//! Attachments (API-13) against the real object store of the local stack (Garage) and, where
//! metadata matters, the real Postgres. Each test works under its own ticket, so the bucket's
//! `attachments/<ticket>/` prefix is the test's own.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{
    TestApp, assert_error, assert_error_says, eventually, postgres_config, s3_stack, stack,
    test_config,
};
use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use service::Config;
use service::config::S3Config;
use sqlx::PgPool;
use test_support::FaultProxy;

const MIB: usize = 1024 * 1024;

/// Deterministic bytes that differ at every offset (so a shifted or truncated copy shows).
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn file(data: Vec<u8>, name: &str, content_type: &str) -> Form {
    Form::new().part(
        "file",
        Part::bytes(data)
            .file_name(name.to_owned())
            .mime_str(content_type)
            .unwrap(),
    )
}

/// A multipart body with no Content-Length: the server can only count while streaming.
fn streamed_file(data: Vec<u8>, name: &str) -> Form {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    Form::new().part("file", Part::stream(body).file_name(name.to_owned()))
}

async fn with_s3(mut config: Config) -> Option<TestApp> {
    let s3 = s3_stack()?;
    config.s3 = s3;
    Some(TestApp::start(config).await)
}

async fn postgres_app() -> Option<(TestApp, PgPool)> {
    let (db, redis) = stack()?;
    let app = with_s3(postgres_config(&db, &redis)).await?;
    Some((app, PgPool::connect(&db).await.unwrap()))
}

fn attachments(ticket: &str) -> String {
    format!("/v1/tickets/{ticket}/attachments")
}

async fn upload(app: &TestApp, ticket: &str, form: Form) -> reqwest::Response {
    app.call(Method::POST, &attachments(ticket), |r| r.multipart(form))
        .await
}

async fn list(app: &TestApp, ticket: &str) -> Vec<Value> {
    let res = app.send(Method::GET, &attachments(ticket)).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Objects and unfinished multipart uploads under the ticket's prefix, straight from S3.
async fn leftovers(app: &TestApp, ticket: &str) -> (usize, usize) {
    let objects = app.state.objects.as_ref().unwrap();
    let prefix = format!("{}{ticket}/", objects.prefix());
    let listed = objects
        .client()
        .list_objects_v2()
        .bucket(objects.bucket())
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let uploads = objects
        .client()
        .list_multipart_uploads()
        .bucket(objects.bucket())
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    (listed.contents().len(), uploads.uploads().len())
}

async fn attachment_rows(pool: &PgPool, ticket: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM attachments WHERE ticket_id = $1::uuid")
        .bind(ticket)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn download(url: &str) -> reqwest::Response {
    // A plain client: the signature in the URL is the only credential.
    reqwest::get(url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_and_download_byte_for_byte() {
    let Some((app, pool)) = postgres_app().await else {
        return;
    };
    let ticket = app.create_id("attach me").await;
    let small = bytes(1000, 1);
    // Larger than one 5 MiB part: goes up as a multipart upload.
    let large = bytes(6 * MIB + 123, 2);

    let res = upload(
        &app,
        &ticket,
        file(small.clone(), "../../etc/ot\tчёт.txt", "text/plain"),
    )
    .await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    assert_eq!(res.headers()["location"], attachments(&ticket).as_str());
    let first: Value = res.json().await.unwrap();
    assert_eq!(
        first["filename"], "otчёт.txt",
        "path and control chars gone"
    );
    assert_eq!(first["content_type"], "text/plain");
    assert_eq!(first["size_bytes"], 1000);
    assert_eq!(first["ticket_id"], ticket.as_str());
    assert_eq!(first["created_by"], app.user.as_str());

    let res = upload(&app, &ticket, streamed_file(large.clone(), "scan.bin")).await;
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["size_bytes"], large.len());
    assert_eq!(second["content_type"], "application/octet-stream");

    let listed = list(&app, &ticket).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], first["id"]);
    assert_eq!(listed[1]["id"], second["id"]);
    for (meta, expected) in [(&listed[0], &small), (&listed[1], &large)] {
        let url = meta["download_url"].as_str().unwrap();
        assert!(
            url.contains("X-Amz-Expires=900"),
            "15 min by default: {url}"
        );
        assert!(
            !url.contains("scan.bin") && !url.contains(".txt"),
            "object key does not carry the name: {url}"
        );
        let expires: chrono::DateTime<chrono::Utc> = meta["download_url_expires_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let left = expires - chrono::Utc::now();
        assert!(
            left > chrono::Duration::minutes(14) && left <= chrono::Duration::minutes(15),
            "{left}"
        );
        let res = download(url).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            meta["content_type"].as_str().unwrap()
        );
        let disposition = res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        let body = res.bytes().await.unwrap();
        assert_eq!(body.len(), expected.len());
        assert!(body.as_ref() == expected.as_slice(), "bytes differ");
    }
    let disposition = download(listed[0]["download_url"].as_str().unwrap())
        .await
        .headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''ot%D1%87%D1%91%D1%82.txt"),
        "{disposition}"
    );

    // One event per attachment, in the transaction of its metadata row.
    let events = app.events(&ticket).await;
    let added: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "ticket.attachment_added")
        .collect();
    assert_eq!(added.len(), 2);
    assert_eq!(added[0].payload["attachment_id"], first["id"]);
    assert_eq!(added[0].payload["created_by"], app.user.as_str());
    assert_eq!(added[1].payload["size_bytes"], large.len());
    assert_eq!(attachment_rows(&pool, &ticket).await, 2);
    assert_eq!(leftovers(&app, &ticket).await, (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_is_413_and_leaves_nothing_behind() {
    let Some((db, redis)) = stack() else { return };
    let mut config = postgres_config(&db, &redis);
    config.attachments.attachment_max_bytes = 6 * MIB as u64;
    let Some(app) = with_s3(config).await else {
        return;
    };
    let pool = PgPool::connect(&db).await.unwrap();
    let ticket = app.create_id("too big").await;

    // Streamed without Content-Length: one 5 MiB part is already in S3 when the limit trips.
    let res = upload(
        &app,
        &ticket,
        streamed_file(bytes(6 * MIB + 1, 3), "big.bin"),
    )
    .await;
    assert_error_says(res, 413, "payload_too_large", "6291456").await;
    assert_eq!(
        leftovers(&app, &ticket).await,
        (0, 0),
        "no object, no parts"
    );
    assert_eq!(attachment_rows(&pool, &ticket).await, 0);
    assert!(list(&app, &ticket).await.is_empty());
    let events = app.events(&ticket).await;
    assert_eq!(events.len(), 1, "only ticket.created: {events:?}");

    // Exactly the limit is fine.
    let res = upload(&app, &ticket, streamed_file(bytes(6 * MIB, 3), "big.bin")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(leftovers(&app, &ticket).await, (1, 0));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("attachment_uploads_total{outcome=\"too_large\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("object_cleanups_total{action=\"abort\",outcome=\"ok\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_the_envelope_and_store_nothing() {
    // Memory mode keeps the metadata; the bytes still go to the real Garage.
    let Some(app) = with_s3(test_config()).await else {
        return;
    };
    let ticket = app.create_id("bad input").await;
    let path = attachments(&ticket);

    let res = app
        .call(Method::POST, &path, |r| {
            r.json(&serde_json::json!({"file": "x"}))
        })
        .await;
    assert_error_says(res, 415, "unsupported_media_type", "multipart/form-data").await;

    let res = app
        .call(Method::POST, &path, |r| {
            r.header("content-type", "multipart/form-data").body("x")
        })
        .await;
    assert_error(res, 400, "invalid_multipart").await;

    let form = Form::new().text("comment", "no file here");
    assert_error(upload(&app, &ticket, form).await, 400, "missing_file").await;
    // A form with no parts at all is not valid multipart.
    assert_error(
        upload(&app, &ticket, Form::new()).await,
        400,
        "invalid_multipart",
    )
    .await;
    let empty = file(Vec::new(), "empty.txt", "text/plain");
    assert_error(upload(&app, &ticket, empty).await, 400, "empty_file").await;
    let two = file(bytes(10, 4), "a.txt", "text/plain").text("another", "field");
    assert_error(upload(&app, &ticket, two).await, 400, "unexpected_field").await;
    let res = app
        .call(Method::POST, &path, |r| {
            r.header("content-type", "text/plain").body("just text")
        })
        .await;
    assert_error(res, 415, "unsupported_media_type").await;
    // Hand-written, since reqwest refuses to send a malformed part Content-Type.
    let raw = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
               Content-Type: nonsense\r\n\r\nhello\r\n--XyZ--\r\n";
    let res = app
        .call(Method::POST, &path, |r| {
            r.header("content-type", "multipart/form-data; boundary=XyZ")
                .body(raw)
        })
        .await;
    assert_error(res, 400, "invalid_content_type").await;

    // Someone else's ticket, an unknown ticket, a malformed id.
    let stranger = app.req_as_stranger(Method::POST, &path).multipart(file(
        bytes(10, 5),
        "a.txt",
        "text/plain",
    ));
    assert_error(stranger.send().await.unwrap(), 403, "forbidden").await;
    let stranger = app.req_as_stranger(Method::GET, &path);
    assert_error(stranger.send().await.unwrap(), 403, "forbidden").await;
    let unknown = uuid::Uuid::now_v7();
    let res = upload(
        &app,
        &unknown.to_string(),
        file(bytes(10, 6), "a", "text/plain"),
    )
    .await;
    assert_error(res, 404, "not_found").await;
    let res = upload(&app, "not-a-uuid", file(bytes(10, 6), "a", "text/plain")).await;
    assert_error(res, 400, "invalid_id").await;

    assert!(list(&app, &ticket).await.is_empty());
    assert_eq!(leftovers(&app, &ticket).await, (0, 0));
    assert_eq!(app.events(&ticket).await.len(), 1, "only ticket.created");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_metadata_write_deletes_the_stored_object() {
    let Some((app, pool)) = postgres_app().await else {
        return;
    };
    let ticket = app.create_id("db fails").await;
    let marker = format!("boom-{}.txt", uuid::Uuid::new_v4().simple());
    let trigger = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.payload->>'filename' = '{marker}' THEN RAISE EXCEPTION 'outbox rejected'; END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER {trigger} BEFORE INSERT ON outbox_events FOR EACH ROW EXECUTE FUNCTION {trigger}();"
    ))
    .execute(&pool)
    .await
    .unwrap();

    let res = upload(&app, &ticket, file(bytes(2000, 7), &marker, "text/plain")).await;
    sqlx::raw_sql(&format!(
        "DROP TRIGGER {trigger} ON outbox_events; DROP FUNCTION {trigger}();"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let body = assert_error(res, 500, "internal").await;
    assert_eq!(body["error"]["message"], "internal error");
    // Deleted before the answer, not eventually.
    assert_eq!(leftovers(&app, &ticket).await, (0, 0));
    assert_eq!(
        attachment_rows(&pool, &ticket).await,
        0,
        "rolled back with the event"
    );
    assert!(list(&app, &ticket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_is_503_and_the_api_recovers() {
    let Some((db, redis)) = stack() else { return };
    let Some(s3) = s3_stack() else { return };
    let garage = s3.s3_endpoint.clone().unwrap();
    let target = garage.trim_start_matches("http://").to_owned();
    let proxy = FaultProxy::start(&target).await;
    let mut config = postgres_config(&db, &redis);
    config.s3 = S3Config {
        s3_endpoint: Some(proxy.rewrite_url(&garage)),
        ..s3
    };
    let app = TestApp::start(config).await;
    let ticket = app.create_id("outage").await;
    let res = upload(
        &app,
        &ticket,
        file(bytes(100, 8), "before.txt", "text/plain"),
    )
    .await;
    assert_eq!(res.status(), 201);

    proxy.down();
    let res = upload(
        &app,
        &ticket,
        file(bytes(100, 8), "during.txt", "text/plain"),
    )
    .await;
    assert_error_says(res, 503, "unavailable", "object store unavailable").await;
    let res = app.probe("/readyz").await;
    let body = assert_error(res, 503, "not_ready").await;
    assert!(
        body["details"]["checks"]["s3"]
            .as_str()
            .unwrap()
            .starts_with("error")
    );
    assert_eq!(body["details"]["checks"]["postgres"], "ok");
    let res = app.probe("/readyz?only=postgres").await;
    assert_eq!(res.status(), 200, "S3 does not gate the chart's readiness");
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "degraded");
    // Everything that does not need the bytes keeps working.
    let res = app
        .send(Method::GET, &format!("/v1/tickets/{ticket}"))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(list(&app, &ticket).await.len(), 1, "presigning is offline");

    proxy.up();
    let ready = eventually(10, || async {
        let res = app.probe("/readyz").await;
        res.status() == 200
    })
    .await;
    assert!(ready, "readyz recovers once S3 is back");
    let res = upload(
        &app,
        &ticket,
        file(bytes(100, 9), "after.txt", "text/plain"),
    )
    .await;
    assert_eq!(res.status(), 201);
    let names: Vec<_> = list(&app, &ticket)
        .await
        .iter()
        .map(|a| a["filename"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["before.txt", "after.txt"],
        "nothing from the outage"
    );
    assert_eq!(leftovers(&app, &ticket).await, (2, 0));
}

#[tokio::test]
async fn without_an_object_store_attachments_answer_503_disabled() {
    let app = TestApp::start(test_config()).await;
    let ticket = app.create_id("no s3").await;
    let path = attachments(&ticket);
    let res = upload(&app, &ticket, file(bytes(10, 1), "a.txt", "text/plain")).await;
    assert_error_says(res, 503, "attachments_disabled", "S3_BUCKET").await;
    let res = app.send(Method::GET, &path).await;
    assert_error(res, 503, "attachments_disabled").await;
    // Readiness does not depend on a store that is not configured.
    let res = app.probe("/readyz").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.json::<Value>().await.unwrap()["checks"]
            .get("s3")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_by_the_timeout_leaves_nothing_behind() {
    let Some((db, redis)) = stack() else { return };
    let mut config = postgres_config(&db, &redis);
    config.attachments.attachment_upload_timeout = std::time::Duration::from_secs(2);
    let Some(app) = with_s3(config).await else {
        return;
    };
    let ticket = app.create_id("stalls").await;
    // 6 MiB at once (one 5 MiB part goes up), then the client stalls past the timeout.
    let first = bytes(6 * MIB, 10);
    let body = futures::stream::unfold(0u8, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
                    Some((Ok(vec![0u8; 10]), 2))
                }
                _ => None,
            }
        }
    });
    let form = Form::new().part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(body)).file_name("slow.bin"),
    );
    let res = app
        .req(Method::POST, &attachments(&ticket))
        .multipart(form)
        .send()
        .await;
    if let Ok(res) = res {
        assert_error(res, 504, "timeout").await;
    }
    // The handler was dropped mid-upload; its multipart upload is aborted in the background.
    let aborted = eventually(10, || async {
        app.metrics()
            .await
            .contains("object_cleanups_total{action=\"abort\",outcome=\"ok\"} 1")
    })
    .await;
    assert!(aborted, "the started multipart upload was aborted");
    assert_eq!(leftovers(&app, &ticket).await, (0, 0));
    assert!(list(&app, &ticket).await.is_empty());
}

/// A multipart body: `first`, then `rest` after `pause` (so the test can act in between).
fn paused_file(first: Vec<u8>, pause: Duration, rest: Vec<u8>, name: &str) -> Form {
    let body = futures::stream::unfold(0u8, move |step| {
        let (first, rest) = (first.clone(), rest.clone());
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(pause).await;
                    Some((Ok(rest), 2))
                }
                _ => None,
            }
        }
    });
    Form::new().part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(body))
            .file_name(name.to_owned())
            .mime_str("text/plain")
            .unwrap(),
    )
}

/// Issue #11.4: the upload timeout fires after the metadata INSERT committed (Postgres replies
/// slowly) but before the handler could keep the object. The row and its event stay, so the
/// object must stay too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_after_its_commit_keeps_its_object() {
    let Some((db, redis)) = stack() else { return };
    let proxy = FaultProxy::start(test_support::url_addr(&db)).await;
    let mut config = postgres_config(&proxy.rewrite_url(&db), &redis);
    config.attachments.attachment_upload_timeout = Duration::from_millis(5500);
    config.db_acquire_timeout = Duration::from_secs(5); // the slow connection check is no timeout
    let Some(app) = with_s3(config).await else {
        return;
    };
    let ticket = app.create_id("slow commit").await;
    let pool = PgPool::connect(&db).await.unwrap();

    // The owner check runs before the body is read (fast); then every Postgres reply takes 2 s.
    // On this fresh pool the INSERT needs three round trips: the connection check (reply at
    // ~2.5 s), the statement's Parse/Describe (~4.5 s), then Execute, which commits at ~4.5 s
    // and answers at ~6.5 s. The timeout (5.5 s) falls between the commit and its answer.
    let form = paused_file(
        b"first half ".to_vec(),
        Duration::from_millis(500),
        b"second half".to_vec(),
        "late.txt",
    );
    let request = app
        .req(Method::POST, &attachments(&ticket))
        .multipart(form)
        .send();
    let slow_down = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        proxy.set_latency(Duration::ZERO, Duration::from_secs(2));
    };
    let (res, ()) = tokio::join!(request, slow_down);
    assert_error(res.unwrap(), 504, "timeout").await;
    proxy.set_latency(Duration::ZERO, Duration::ZERO);

    assert!(
        eventually(10, || async { attachment_rows(&pool, &ticket).await == 1 }).await,
        "the metadata committed"
    );
    // Give a background delete (what the old code did) time to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        leftovers(&app, &ticket).await,
        (1, 0),
        "the object a committed row points at was deleted"
    );
    let listed = list(&app, &ticket).await;
    assert_eq!(listed.len(), 1);
    let res = download(listed[0]["download_url"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        b"first half second half"
    );
}

/// Issue #11.13: an upload in flight when SIGTERM arrives completes (the grace period covers the
/// upload timeout) instead of being cut off after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_at_shutdown_completes() {
    let Some((app, pool)) = postgres_app().await else {
        return;
    };
    let ticket = app.create_id("deploy mid-upload").await;
    let form = paused_file(
        b"before ".to_vec(),
        Duration::from_secs(12),
        b"after".to_vec(),
        "deploy.txt",
    );
    let request = app
        .req(Method::POST, &attachments(&ticket))
        .multipart(form)
        .send();
    let stop = app.stop.clone();
    let sigterm = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
    };
    let (res, ()) = tokio::join!(request, sigterm);
    let res = res.expect("the upload was cut off by the shutdown");
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(attachment_rows(&pool, &ticket).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_removes_what_a_crash_left_and_nothing_else() {
    let Some((db, redis)) = stack() else { return };
    let Some(mut s3) = s3_stack() else { return };
    // A prefix of its own: a zero grace would otherwise race other tests' uploads in flight.
    s3.s3_key_prefix = format!("sweep-{}/", uuid::Uuid::new_v4().simple());
    let mut config = postgres_config(&db, &redis);
    config.s3 = s3;
    config.attachments.attachment_sweep_interval = std::time::Duration::ZERO;
    let app = TestApp::start(config).await;
    let objects = app.state.objects.clone().unwrap();
    let ticket = app.create_id("crash leftovers").await;
    let ticket_id: uuid::Uuid = ticket.parse().unwrap();

    let kept = upload(
        &app,
        &ticket,
        file(bytes(500, 11), "kept.txt", "text/plain"),
    )
    .await;
    assert_eq!(kept.status(), 201);
    let kept: Value = kept.json().await.unwrap();
    // What a process killed after PutObject, and one killed mid multipart upload, leave behind.
    let orphan = objects.key_for(ticket_id, uuid::Uuid::now_v7());
    objects
        .client()
        .put_object()
        .bucket(objects.bucket())
        .key(&orphan)
        .body(bytes(100, 12).into())
        .send()
        .await
        .unwrap();
    objects
        .client()
        .create_multipart_upload()
        .bucket(objects.bucket())
        .key(objects.key_for(ticket_id, uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(leftovers(&app, &ticket).await, (2, 1));

    let young = service::sweep::sweep_once(
        &objects,
        app.state.store.as_ref(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(
        (young.deleted, young.aborted),
        (0, 0),
        "within the grace period"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let swept = service::sweep::sweep_once(
        &objects,
        app.state.store.as_ref(),
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!((swept.scanned, swept.deleted, swept.aborted), (2, 1, 1));
    assert_eq!(leftovers(&app, &ticket).await, (1, 0));
    let listed = list(&app, &ticket).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], kept["id"]);
    let res = download(listed[0]["download_url"].as_str().unwrap()).await;
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        bytes(500, 11).as_slice()
    );
}
