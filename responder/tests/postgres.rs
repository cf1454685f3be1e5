//! The queue and the audit log on a real PostgreSQL server (initdb and
//! pg_ctl into a temporary directory, see `keyburn_responder::testdb`),
//! with several connections standing in for replicas.

use std::collections::HashSet;
use std::time::Duration;

use keyburn_responder::audit::{verify_postgres, AuditLog, Record};
use keyburn_responder::queue::{Enqueued, Failure, NewJob, Queue, Standing, State};
use keyburn_responder::testdb::TestPostgres;

fn job<'a>(delivery: Option<&'a str>, alert: u64) -> NewJob<'a> {
    NewJob {
        delivery,
        repo: "acme/app",
        alert_number: alert,
        source: "webhook",
        payload: "{}",
        step: "fetch",
    }
}

#[test]
fn replicas_share_one_queue_with_dedupe_skip_locked_claims_and_fencing() {
    let pg = TestPostgres::start();
    let mut a = Queue::connect(&pg.url()).unwrap();
    let mut b = Queue::connect(&pg.url()).unwrap();
    assert!(a.is_shared());

    // The same delivery at two replicas: one job. Another delivery of the
    // same alert: recorded against it.
    let Enqueued::Created(id) = a.enqueue(&job(Some("d1"), 7), 0).unwrap() else {
        panic!()
    };
    assert_eq!(
        b.enqueue(&job(Some("d1"), 7), 1).unwrap(),
        Enqueued::DuplicateDelivery(Some(id))
    );
    assert_eq!(
        b.enqueue(&job(Some("d2"), 7), 2).unwrap(),
        Enqueued::AlreadyPending(id)
    );
    // One batch: a delivery repeated in it, another delivery of an alert
    // it creates, a delivery of an alert already pending, one seen before.
    let out = b
        .enqueue_all(
            &[
                job(Some("e1"), 8),
                job(Some("e1"), 8),
                job(Some("e2"), 9),
                job(Some("e3"), 8),
                job(Some("e4"), 7),
                job(Some("d1"), 7),
                job(None, 10),
            ],
            3,
        )
        .unwrap();
    let Enqueued::Created(eight) = out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(out[1], Enqueued::DuplicateDelivery(Some(eight)));
    assert!(matches!(out[2], Enqueued::Created(n) if n != eight));
    assert_eq!(out[3], Enqueued::AlreadyPending(eight));
    assert_eq!(out[4], Enqueued::AlreadyPending(id));
    assert_eq!(out[5], Enqueued::DuplicateDelivery(Some(id)));
    assert!(matches!(out[6], Enqueued::Created(_)));
    assert_eq!(
        a.enqueue(&job(Some("e3"), 8), 4).unwrap(),
        Enqueued::DuplicateDelivery(Some(eight))
    );
    assert!(b.record_delivery("ping", 3).unwrap());
    assert!(!a.record_delivery("ping", 4).unwrap());

    // Concurrent batches from two replicas over the same alerts, in
    // opposite orders: no deadlock, one job per alert.
    let url = pg.url();
    let batches: Vec<_> = (0..2)
        .map(|r| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut q = Queue::connect(&url).unwrap();
                for round in 0..20 {
                    let mut alerts: Vec<u64> = (100..110).collect();
                    if r == 1 {
                        alerts.reverse();
                    }
                    let ids: Vec<String> =
                        alerts.iter().map(|n| format!("r{r}-{round}-{n}")).collect();
                    let jobs: Vec<NewJob> = alerts
                        .iter()
                        .zip(&ids)
                        .map(|(n, d)| job(Some(d), *n))
                        .collect();
                    q.enqueue_all(&jobs, 10).unwrap();
                }
            })
        })
        .collect();
    for t in batches {
        t.join().unwrap();
    }
    let pending = a.list(Some(State::Queued), 1000).unwrap();
    assert_eq!(pending.len(), 14, "alerts 7 to 10 and 100..110, once each");

    // Two replicas claiming at once never take the same job.
    let claimed: Vec<i64> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut q = Queue::connect(&url).unwrap();
                let mut mine = Vec::new();
                while let Some(j) = q.claim(100, Duration::from_secs(60)).unwrap() {
                    mine.push(j.id);
                }
                mine
            })
        })
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(claimed.len(), 14);
    assert_eq!(claimed.iter().collect::<HashSet<_>>().len(), 14);

    // A lease taken over: the stale holder's writes are refused.
    let mut c = Queue::connect(&url).unwrap();
    c.enqueue(&job(None, 500), 0).unwrap();
    let stale = a.claim(200, Duration::from_millis(10)).unwrap().unwrap();
    let fresh = b.claim(300, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(stale.id, fresh.id);
    assert!(a.advance(stale.lease(), "revoke", "{}", 301).is_err());
    b.advance(fresh.lease(), "revoke", r#"{"intent":"revoke"}"#, 302)
        .unwrap();
    b.fail(
        fresh.lease(),
        "HTTP 404",
        Failure::Permanent,
        &Default::default(),
        303,
    )
    .unwrap();
    assert_eq!(
        c.standing("acme/app", 500).unwrap(),
        Standing::Dead(fresh.id)
    );
    c.retry(fresh.id, Some("revoke"), 304).unwrap();
    let again = c.get(fresh.id).unwrap();
    assert_eq!((again.state, again.context.as_str()), (State::Queued, "{}"));
    let again = c.claim(305, Duration::from_secs(60)).unwrap().unwrap();
    c.complete(again.lease(), r#"{"alert_closed":true}"#, 306)
        .unwrap();
    assert_eq!(
        a.standing("acme/app", 500).unwrap(),
        Standing::Closed(fresh.id)
    );
    let counts = a.counts().unwrap();
    assert!(counts.contains(&(State::Done, 1)), "{counts:?}");
}

#[test]
fn replicas_append_to_one_audit_chain_that_verify_checks_against_its_head() {
    let pg = TestPostgres::start();
    Queue::connect(&pg.url()).unwrap(); // creates the tables
    let url = pg.url();
    let writers: Vec<_> = (0..3)
        .map(|r| {
            let url = url.clone();
            std::thread::spawn(move || {
                let log = AuditLog::connect(&url, b"shared-key").unwrap();
                for i in 0..30 {
                    log.append(Record {
                        event: format!("replica-{r}"),
                        actor: "test".into(),
                        outcome: i.to_string(),
                        ..Record::default()
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(verify_postgres(&url).unwrap().records(), 90);

    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // Records cut from the end: the head still names 90.
    sql.batch_execute("BEGIN; CREATE TABLE saved AS SELECT * FROM audit_log; DELETE FROM audit_log WHERE seq > 88; COMMIT;")
        .unwrap();
    let err = verify_postgres(&url).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    // A record edited in the middle: the chain breaks there.
    sql.batch_execute(
        "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM saved; \
         UPDATE audit_log SET line = replace(line, '\"actor\":\"test\"', '\"actor\":\"evil\"') WHERE seq = 4;",
    )
    .unwrap();
    assert!(verify_postgres(&url).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_url_is_validated_by_authenticating_and_nothing_else() {
    use keyburn_responder::http::Http;
    use keyburn_responder::providers::{Options, Registry, Secret, Validity};

    let pg = tokio::task::spawn_blocking(|| {
        let pg = TestPostgres::start();
        pg.password_role("leaky", "Fixture-pw-0000");
        pg.tls_only_role("managed", "Fixture-pw-2222");
        pg
    })
    .await
    .unwrap();
    let rules = keyburn_scanner::rules::RuleSet::builtin();
    let rule = rules.get("postgres-url-password").unwrap();
    let registry = Registry::new(
        &rules,
        &Http::new(Duration::from_secs(5)),
        &Options {
            allow_internal: true,
            ..Options::default()
        },
    );
    let check = registry.for_rule("postgres-url-password").unwrap();
    let secret_of = |user: &str, password: &str| {
        // The parts come from the rule's own regex, as in a scan.
        let url = format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            pg.port()
        );
        Secret {
            value: password.to_string(),
            parts: rule.parts(&url),
        }
    };
    let secret = |password: &str| secret_of("leaky", password);
    let live = check.validate(&secret("Fixture-pw-0000")).await.unwrap();
    assert_eq!(live.validity, Validity::Active, "{}", pg.log());
    let dead = check.validate(&secret("Fixture-pw-1111")).await.unwrap();
    assert_eq!(dead.validity, Validity::Inactive, "{}", dead.reason);
    assert!(dead.reason.contains("28P01"), "{}", dead.reason);
    // A role that may only log in over TLS (as on managed databases) is
    // validated over TLS, not taken for refused.
    let tls = check
        .validate(&secret_of("managed", "Fixture-pw-2222"))
        .await
        .unwrap();
    assert_eq!(
        tls.validity,
        Validity::Active,
        "{}\n{}",
        tls.reason,
        pg.log()
    );
    let tls_dead = check
        .validate(&secret_of("managed", "Fixture-pw-3333"))
        .await
        .unwrap();
    assert_eq!(tls_dead.validity, Validity::Inactive, "{}", tls_dead.reason);
    // Without --allow-internal the server is not contacted.
    let guarded = Registry::new(
        &rules,
        &Http::new(Duration::from_secs(5)),
        &Options::default(),
    );
    let e = guarded
        .for_rule("postgres-url-password")
        .unwrap()
        .validate(&secret("Fixture-pw-0000"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--allow-internal"), "{e}");
}
