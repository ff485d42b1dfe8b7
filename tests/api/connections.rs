//! Connections the database drops. PostgreSQL ends sessions on a restart, a failover or an
//! idle timeout; the server must replace such connections rather than fail requests on
//! them. A connection that answered within the last second is handed out untested (a round
//! trip saved per request); one idle for longer is tested first.

use crate::helpers::*;
use diesel::prelude::*;

const NAME: &str = "cobro_dropped_connections";

/// Ends every session of the server under test, as a restart of PostgreSQL would.
fn drop_sessions(url: &str) -> usize {
    let mut admin = PgConnection::establish(url).expect("connect to the test PostgreSQL");
    #[derive(QueryableByName)]
    struct Ended {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let ended: Ended = diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE application_name = '{NAME}'"
    ))
    .get_result(&mut admin)
    .unwrap();
    ended.n as usize
}

#[test]
fn connections_dropped_by_postgres_are_replaced() {
    let Some(url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let named = format!("{url}{separator}application_name={NAME}");
    let pool = 4;
    let db = cobro::db::Db::connect(
        &cobro::db::DatabaseUrl::parse(&named).unwrap(),
        pool,
        "FULL",
    )
    .expect("connect");
    let server: &'static Server = Box::leak(Box::new(serve(db, |_| {})));
    let app = App::new(Backend::Postgres).unwrap().on(server);
    let id = app.create_payment(json!({}))["id"].clone();
    let path = format!("/payments/{id}/");
    app.get(&path).expect(200);

    // Dropped while idle: no request sees it.
    assert!(drop_sessions(&url) >= 1);
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    for _ in 0..20 {
        app.get(&path).expect(200);
    }

    // Dropped right after use: a request may meet a dead connection once (a 503 to retry,
    // which names nothing inside), which retires it; the pool recovers at once.
    assert!(drop_sessions(&url) >= 1);
    let answers: Vec<Resp> = (0..20).map(|_| app.get(&path)).collect();
    let failed: Vec<&Resp> = answers.iter().filter(|r| r.status != 200).collect();
    // At most one failure per pooled connection (the worker's reserved ones included).
    let connections = (pool + cobro::db::RESERVED_CONNECTIONS) as usize;
    assert!(failed.len() <= connections, "{} failed", failed.len());
    for answer in &failed {
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert_eq!(
            answer.body,
            json!({"detail": "Service temporarily unavailable, try again later."})
        );
        assert!(answer.header("retry-after").is_some());
    }
    assert!(answers[answers.len() - 10..]
        .iter()
        .all(|r| r.status == 200));
}
