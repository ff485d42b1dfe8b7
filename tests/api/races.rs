//! Races that the database decides: on PostgreSQL at SERIALIZABLE isolation, concurrent
//! writes of one payment fail with serialization errors, and the server must run them again
//! rather than hand a client a 500 (or lose an update).

use crate::helpers::*;

/// A server on the test PostgreSQL database whose every transaction is SERIALIZABLE.
fn serializable_app() -> Option<App> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-c%20default_transaction_isolation%3Dserializable");
    let db = cobro::db::Db::connect(&cobro::db::DatabaseUrl::parse(&url).unwrap(), 12, "NORMAL")
        .expect("connect with SERIALIZABLE");
    let server: &'static Server = Box::leak(Box::new(serve(db, |_| {})));
    Some(App::new(Backend::Postgres)?.on(server))
}

#[test]
fn serialization_failures_are_retried_inside_the_server() {
    let Some(app) = serializable_app() else {
        return;
    };
    let id = app.create_payment(json!({}))["id"].clone();
    let writers = 10;
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let app = &app;
                let id = &id;
                s.spawn(move || {
                    app.patch(
                        &format!("/payments/{id}/"),
                        json!({"metadata": {format!("k{i}"): "v"}}),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    // No update lost: every writer's key is there, and each wrote one event.
    let metadata = app.get(&format!("/payments/{id}/")).expect(200).body["metadata"].clone();
    assert_eq!(metadata.as_object().unwrap().len(), writers, "{metadata}");
    let updates = app
        .event_types(&id)
        .iter()
        .filter(|t| *t == "payment.updated")
        .count();
    assert_eq!(updates, writers);

    // Concurrent moves: one winner, the others a 400 that names the new state.
    let id = app.create_payment(json!({}))["id"].clone();
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let app = &app;
                let id = &id;
                s.spawn(move || {
                    if i % 2 == 0 {
                        app.post(&format!("/payments/{id}/cancel/"), json!({}))
                    } else {
                        app.patch(&format!("/payments/{id}/"), json!({"status": "succeeded"}))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        answers.iter().all(|r| matches!(r.status, 200 | 400)),
        "{:?}",
        answers
            .iter()
            .map(|r| (r.status, &r.text))
            .collect::<Vec<_>>()
    );
    let moves: Vec<String> = app
        .event_types(&id)
        .into_iter()
        .filter(|t| t != "payment.created")
        .collect();
    assert_eq!(moves.len(), 1, "{moves:?}");
}
