//! Safe retries: `Idempotency-Key` on POST (API.md §6).

use diesel::prelude::*;

use crate::both;
use crate::helpers::*;
use cobro::db::schema::idempotency_keys;

const PAYMENT: &str =
    r#"{"amount": "1500", "currency": "CLP", "date": "2026-11-23", "description": "Order 7"}"#;

fn post_with_key(app: &App, path: &str, body: &str, key: &str) -> Resp {
    app.send("POST", path, Some(body), &[("Idempotency-Key", key)])
}

fn payment_count(app: &App) -> i64 {
    app.get("/payments/").expect(200).body["count"]
        .as_i64()
        .unwrap()
}

/// The stored row of a key: (lock token, response status), None when there is none.
fn stored(app: &App, key: &str) -> Option<(Option<String>, Option<i32>)> {
    let mut conn = app.server.db.pool.get().unwrap();
    idempotency_keys::table
        .filter(idempotency_keys::workspace_id.eq(&app.workspace))
        .filter(idempotency_keys::test_mode.eq(app.test_mode))
        .filter(idempotency_keys::idempotency_key.eq(key))
        .select((
            idempotency_keys::lock_token,
            idempotency_keys::response_status,
        ))
        .first(&mut **conn)
        .optional()
        .unwrap()
}

both! {
    fn a_retry_gets_the_first_answer_byte_for_byte_and_creates_nothing(app) {
        let key = unique("key-");
        let first = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
        assert_eq!(first.header("Idempotent-Replayed"), None);
        for _ in 0..2 {
            let retry = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
            assert_eq!(retry.text, first.text, "a replay must be the same bytes");
            assert_eq!(retry.header("Idempotent-Replayed"), Some("true"));
            assert_eq!(retry.header("Content-Type"), Some("application/json"));
        }
        // The same fields in another order, or as a form, are the same request.
        let reordered = r#"{"description": "Order 7", "date": "2026-11-23", "currency": "CLP", "amount": "1500"}"#;
        assert_eq!(post_with_key(&app, "/payments/", reordered, &key).expect(201).text, first.text);
        let form = app.send("POST", "/payments/",
            Some("amount=1500&currency=CLP&date=2026-11-23&description=Order+7"),
            &[("Idempotency-Key", &key), ("Content-Type", "application/x-www-form-urlencoded")]);
        assert_eq!(form.expect(201).text, first.text);

        assert_eq!(payment_count(&app), 1);
        assert_eq!(app.event_types(&first.body["id"]), ["payment.created"]);
        // A new key is a new payment; no key is always a new payment.
        post_with_key(&app, "/payments/", PAYMENT, &unique("key-")).expect(201);
        app.send("POST", "/payments/", Some(PAYMENT), &[]).expect(201);
        app.send("POST", "/payments/", Some(PAYMENT), &[]).expect(201);
        assert_eq!(payment_count(&app), 4);
    }

    fn the_same_key_for_other_fields_or_another_path_is_a_409(app) {
        let key = unique("key-");
        let first = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
        let other = PAYMENT.replace("1500", "1600");
        let conflict = post_with_key(&app, "/payments/", &other, &key).expect(409);
        assert_eq!(conflict.body["code"], "idempotency_error");
        assert!(conflict.body["detail"].as_str().unwrap().contains("same parameters"), "{}", conflict.text);

        let id = first.body["id"].clone();
        let elsewhere = post_with_key(&app, &format!("/payments/{id}/cancel/"), "", &key).expect(409);
        assert!(elsewhere.body["detail"].as_str().unwrap().contains("POST /payments/"), "{}", elsewhere.text);
        // Nothing ran: one payment, still open.
        assert_eq!(payment_count(&app), 1);
        assert_eq!(app.get(&format!("/payments/{id}/")).expect(200).body["status"], "requires_payment_method");
        // And the first answer is still there for a true retry.
        assert_eq!(post_with_key(&app, "/payments/", PAYMENT, &key).expect(201).text, first.text);
    }

    fn twenty_concurrent_requests_with_one_key_run_once(app) {
        let key = unique("key-");
        let answers: Vec<Resp> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| s.spawn(|| post_with_key(&app, "/payments/", PAYMENT, &key)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created: Vec<&Resp> = answers.iter().filter(|r| r.status == 201).collect();
        assert!(!created.is_empty(), "no request got the answer");
        for answer in &answers {
            assert!(matches!(answer.status, 201 | 409), "{} {}", answer.status, answer.text);
            if answer.status == 409 {
                assert!(answer.body["detail"].as_str().unwrap().contains("still in progress"), "{}", answer.text);
            }
        }
        assert!(created.iter().all(|r| r.text == created[0].text), "answers differ");
        assert_eq!(payment_count(&app), 1, "the work ran more than once");
        // Once it is done, every retry is a replay.
        assert_eq!(post_with_key(&app, "/payments/", PAYMENT, &key).expect(201).text, created[0].text);
    }

    fn keys_are_separate_per_workspace_mode_and_credential(app) {
        let key = unique("key-");
        let live = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
        let test = post_with_key(&app.in_test_mode(), "/payments/", PAYMENT, &key).expect(201);
        let stranger = app.stranger();
        let theirs = post_with_key(&stranger, "/payments/", PAYMENT, &key).expect(201);
        // A secret key of the same workspace and mode is another credential.
        let secret = app.secret_key(false);
        let by_key = send("POST", &app.url("/payments/"),
            &[("Authorization", &format!("Bearer {secret}")), ("Content-Type", "application/json"), ("Idempotency-Key", &key)],
            Some(PAYMENT)).expect(201);
        let ids = [&live, &test, &theirs, &by_key].map(|r| r.body["id"].as_i64().unwrap());
        let mut distinct = ids.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{ids:?}");
        assert_eq!(payment_count(&app), 2);
        assert_eq!(payment_count(&app.in_test_mode()), 1);
        assert_eq!(payment_count(&stranger), 1);
        // Each replays its own answer.
        assert_eq!(post_with_key(&app.in_test_mode(), "/payments/", PAYMENT, &key).expect(201).text, test.text);
    }

    fn refused_requests_store_nothing_and_free_the_key(app) {
        let key = unique("key-");
        let invalid = PAYMENT.replace("\"CLP\"", "\"XXX\"");
        post_with_key(&app, "/payments/", &invalid, &key).expect(400);
        assert_eq!(stored(&app, &key), None);
        // The corrected request runs, under the same key.
        let created = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
        let id = created.body["id"].clone();

        // A refused move stores nothing either, and a retry is decided again.
        app.patch(&format!("/payments/{id}/"), json!({"status": "succeeded"})).expect(200);
        let cancel_key = unique("key-");
        post_with_key(&app, &format!("/payments/{id}/cancel/"), "", &cancel_key).expect(400);
        assert_eq!(stored(&app, &cancel_key), None);
    }

    fn a_retried_cancel_answers_as_the_first_did(app) {
        let id = app.create_payment(json!({}))["id"].clone();
        let key = unique("key-");
        let path = format!("/payments/{id}/cancel/");
        let first = post_with_key(&app, &path, "", &key).expect(200);
        assert_eq!(first.body["status"], "cancelled");
        // Without the key, cancelling twice is an error; with it, the retry is the answer.
        let retry = post_with_key(&app, &path, "", &key).expect(200);
        assert_eq!(retry.text, first.text);
        app.send("POST", &path, None, &[]).expect(400);
        assert_eq!(app.event_types(&id), ["payment.created", "payment.cancelled"]);
    }

    fn a_retried_charge_charges_once(app) {
        let app = app.in_test_mode();
        let id = app.create_payment(json!({}))["id"].clone();
        let source = app.create_source(json!({"usage": "reusable"}))["id"].clone();
        let key = unique("key-");
        let path = format!("/payments/{id}/authorize/");
        let body = json!({"source": source}).to_string();
        let first = post_with_key(&app, &path, &body, &key).expect(200);
        assert_eq!(first.body["status"], "succeeded");
        assert_eq!(post_with_key(&app, &path, &body, &key).expect(200).text, first.text);
        let attempts = app.get(&format!("/payments/{id}/attempts/")).expect(200).body;
        assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
        // A source created with a key is created once.
        let source_key = unique("key-");
        let source_body = r#"{"gateway": "sandbox", "gateway_data": {"token": "tok_visa"}}"#;
        let made = post_with_key(&app, "/sources/", source_body, &source_key).expect(201);
        assert_eq!(post_with_key(&app, "/sources/", source_body, &source_key).expect(201).text, made.text);
        assert_eq!(app.get("/sources/").expect(200).body["count"], 2);
    }

    fn a_key_still_running_elsewhere_is_a_409_until_its_lease_ends(app) {
        // What another server process leaves while it runs (or if it died): a claimed row.
        let key = unique("key-");
        let (credential, fingerprint) = probe(&app);
        let claim = |locked_at: chrono::NaiveDateTime| {
            let mut conn = app.server.db.pool.get().unwrap();
            diesel::delete(idempotency_keys::table.filter(idempotency_keys::idempotency_key.eq(&key)))
                .execute(&mut **conn).unwrap();
            diesel::insert_into(idempotency_keys::table)
                .values((
                    idempotency_keys::workspace_id.eq(&app.workspace),
                    idempotency_keys::test_mode.eq(false),
                    idempotency_keys::credential.eq(&credential),
                    idempotency_keys::idempotency_key.eq(&key),
                    idempotency_keys::request_path.eq("/payments/"),
                    idempotency_keys::fingerprint.eq(&fingerprint),
                    idempotency_keys::lock_token.eq("another-process"),
                    idempotency_keys::locked_at.eq(locked_at),
                    idempotency_keys::created.eq(locked_at),
                ))
                .execute(&mut **conn).unwrap();
        };
        claim(cobro::db::now());
        let busy = post_with_key(&app, "/payments/", PAYMENT, &key).expect(409);
        assert!(busy.body["detail"].as_str().unwrap().contains("still in progress"), "{}", busy.text);
        assert_eq!(payment_count(&app), 1); // the probe's

        // A claim older than the lease belongs to a process presumed dead: taken over.
        claim(cobro::db::now() - chrono::Duration::seconds(11));
        let created = post_with_key(&app, "/payments/", PAYMENT, &key).expect(201);
        assert_eq!(stored(&app, &key), Some((None, Some(201))));
        assert_eq!(post_with_key(&app, "/payments/", PAYMENT, &key).expect(201).text, created.text);
        assert_eq!(payment_count(&app), 2);
    }

    fn keys_are_forgotten_and_purged_after_their_ttl(app) {
        let Some(server) = server_with(app.backend(), |s| s.idempotency_ttl_seconds = 2) else { return };
        let short = app.on(server);
        let key = unique("key-");
        let first = post_with_key(&short, "/payments/", PAYMENT, &key).expect(201);
        assert_eq!(stored(&short, &key), Some((None, Some(201))));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stored(&short, &key).is_some() {
            assert!(std::time::Instant::now() < deadline, "the key was not purged");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // Forgotten: the key is new again.
        let again = post_with_key(&short, "/payments/", &PAYMENT.replace("1500", "1700"), &key).expect(201);
        assert_ne!(again.body["id"], first.body["id"]);
    }

    fn malformed_keys_are_refused(app) {
        let long = "k".repeat(256);
        let refused = post_with_key(&app, "/payments/", PAYMENT, &long).expect(400);
        assert!(refused.body["detail"].as_str().unwrap().contains("Idempotency-Key"), "{}", refused.text);
        post_with_key(&app, "/payments/", PAYMENT, &"k".repeat(255)).expect(201);
        assert_eq!(payment_count(&app), 1);
    }
}

/// The user's credential as keys are scoped and the fingerprint of `PAYMENT`, as the server
/// stores them (learnt from a request with another key, which creates one payment).
fn probe(app: &App) -> (String, String) {
    let key = unique("probe-");
    post_with_key(app, "/payments/", PAYMENT, &key).expect(201);
    let mut conn = app.server.db.pool.get().unwrap();
    idempotency_keys::table
        .filter(idempotency_keys::workspace_id.eq(&app.workspace))
        .filter(idempotency_keys::idempotency_key.eq(&key))
        .select((idempotency_keys::credential, idempotency_keys::fingerprint))
        .first(&mut **conn)
        .unwrap()
}
