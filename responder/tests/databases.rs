//! The database validators against real servers started by the test:
//! Redis, MariaDB and RabbitMQ from Debian's packages (PostgreSQL's is in
//! `tests/postgres.rs`). Each connects, authenticates and disconnects;
//! a wrong password reads inactive; an internal host needs
//! --allow-internal.

use std::time::Duration;

use keyburn_responder::http::Http;
use keyburn_responder::providers::{CheckError, Checked, Options, Registry, Secret, Validity};
use keyburn_responder::testdb::{start_mariadb, start_rabbitmq, start_redis};
use keyburn_scanner::rules::RuleSet;

fn registry(allow_internal: bool) -> Registry {
    Registry::new(
        &RuleSet::builtin(),
        &Http::new(Duration::from_secs(5)),
        &Options {
            allow_internal,
            ..Options::default()
        },
    )
}

/// What `rule`'s check says of the password `pw` in the URL `url(pw)`,
/// with the parts a scan of that URL gives.
async fn login(
    allow_internal: bool,
    rule: &str,
    url: &dyn Fn(&str) -> String,
    pw: &str,
) -> Result<Checked, CheckError> {
    let secret = Secret {
        value: pw.to_string(),
        parts: RuleSet::builtin().get(rule).unwrap().parts(&url(pw)),
    };
    registry(allow_internal)
        .for_rule(rule)
        .unwrap()
        .validate(&secret)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_url_is_validated_by_authenticating() {
    let server = tokio::task::spawn_blocking(|| start_redis("Fixture-redis-0000"))
        .await
        .unwrap();
    let port = server.port();
    let url = |pw: &str| format!("redis://:{pw}@127.0.0.1:{port}/0");
    let live = login(true, "redis-url-password", &url, "Fixture-redis-0000")
        .await
        .unwrap();
    assert_eq!(
        live.validity,
        Validity::Active,
        "{} {}",
        live.reason,
        server.log()
    );
    let dead = login(true, "redis-url-password", &url, "Fixture-redis-1111")
        .await
        .unwrap();
    assert_eq!(dead.validity, Validity::Inactive, "{}", dead.reason);
    let e = login(false, "redis-url-password", &url, "Fixture-redis-0000")
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Skipped(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_url_is_validated_by_authenticating() {
    let server = tokio::task::spawn_blocking(start_mariadb).await.unwrap();
    let port = server.port();
    // The test's own administration, as root over TCP.
    let mut admin = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("root")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    use mysql_async::prelude::Queryable;
    admin
        .query_drop("CREATE USER 'leaky'@'%' IDENTIFIED BY 'Fixture-my-0000'")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    let url = |pw: &str| format!("mysql://leaky:{pw}@127.0.0.1:{port}/shop");
    let live = login(true, "mysql-url-password", &url, "Fixture-my-0000")
        .await
        .unwrap();
    assert_eq!(live.validity, Validity::Active, "{}", live.reason);
    let dead = login(true, "mysql-url-password", &url, "Fixture-my-1111")
        .await
        .unwrap();
    assert_eq!(dead.validity, Validity::Inactive, "{}", dead.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_url_is_validated_by_authenticating() {
    let server = tokio::task::spawn_blocking(start_rabbitmq).await.unwrap();
    let port = server.port();
    // The broker's own default user, which may connect from loopback.
    let url = |pw: &str| format!("amqp://guest:{pw}@127.0.0.1:{port}/");
    let live = login(true, "amqp-url-password", &url, "guest")
        .await
        .unwrap();
    assert_eq!(
        live.validity,
        Validity::Active,
        "{} {}",
        live.reason,
        server.log()
    );
    let dead = login(true, "amqp-url-password", &url, "Fixture-mq-1111")
        .await
        .unwrap();
    assert_eq!(dead.validity, Validity::Inactive, "{}", dead.reason);
}

/// No MongoDB server installs from Debian's packages, so the validator's
/// login is not exercised here; what is: the parts a scan gives, the guard,
/// and a server that is not MongoDB, which must come out as an error,
/// never as a refused password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_url_is_guarded_and_a_server_that_is_not_mongodb_is_no_refusal() {
    let rule = "mongodb-url-password";
    let parts = RuleSet::builtin().get(rule).unwrap().parts(
        "mongodb+srv://api:Fixture-mongo-0000@cluster0.ab1cd.mongodb.net/prod?retryWrites=true&w=majority",
    );
    let part = |k: &str| parts.get(k).map(String::as_str);
    assert_eq!(part("scheme"), Some("mongodb+srv"));
    assert_eq!(part("user"), Some("api"));
    assert_eq!(part("host"), Some("cluster0.ab1cd.mongodb.net"));
    assert_eq!(part("database"), Some("prod"));
    assert_eq!(part("options"), Some("retryWrites=true&w=majority"));

    // A listener that counts connections and closes each one at once.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let url = |pw: &str| format!("mongodb://app:{pw}@127.0.0.1:{port}/admin");
    let e = login(false, rule, &url, "Fixture-mongo-0000")
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Skipped(_)), "{e}");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);

    let broken = login(true, rule, &url, "Fixture-mongo-0000").await;
    assert!(
        broken
            .as_ref()
            .is_err_and(|e| matches!(e, CheckError::Call(_))),
        "{broken:?}"
    );
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) > 0);
}
