//! The status machine over HTTP: every pair of the table, the money rules of each move,
//! cancel, and concurrent moves with exactly one winner.

use crate::both;
use crate::helpers::*;

const STATUSES: [&str; 6] = [
    "requires_payment_method",
    "incomplete",
    "processing",
    "succeeded",
    "failed",
    "cancelled",
];

/// API.md §2's allowed moves.
fn allowed(from: &str, to: &str) -> bool {
    match from {
        "requires_payment_method" => [
            "processing",
            "incomplete",
            "succeeded",
            "failed",
            "cancelled",
        ]
        .contains(&to),
        "incomplete" => ["processing", "incomplete", "succeeded"].contains(&to),
        "processing" => ["succeeded", "incomplete", "failed"].contains(&to),
        "failed" => ["processing", "incomplete", "succeeded", "cancelled"].contains(&to),
        _ => false,
    }
}

/// A payment of 1000 CLP brought to `status` through the API.
fn payment_in(app: &App, status: &str) -> Value {
    match status {
        "requires_payment_method" | "processing" | "succeeded" => {
            app.create_payment(json!({"status": status}))
        }
        _ => {
            let p = app.create_payment(json!({}));
            let path = format!("/payments/{}/", p["id"]);
            match status {
                "incomplete" => {
                    app.patch(
                        &path,
                        json!({"status": "incomplete", "amount_collected": 100}),
                    )
                    .expect(200)
                    .body
                }
                "failed" => {
                    app.patch(
                        &path,
                        json!({"status": "failed", "failed_reason": "card_declined"}),
                    )
                    .expect(200)
                    .body
                }
                "cancelled" => {
                    app.post(&format!("{path}cancel/"), json!({}))
                        .expect(200)
                        .body
                }
                _ => unreachable!(),
            }
        }
    }
}

both! {
    fn every_pair_of_the_status_table(app) {
        for from in STATUSES {
            for to in STATUSES {
                let p = payment_in(&app, from);
                assert_eq!(p["status"], from);
                let path = format!("/payments/{}/", p["id"]);
                let events_before = app.event_types(&p["id"]).len();
                let mut body = json!({"status": to});
                if to == "incomplete" {
                    body["amount_collected"] = json!(10);
                }
                let resp = app.patch(&path, body);
                let events_after = app.event_types(&p["id"]);
                if from == to && to != "incomplete" {
                    // Sending the status a payment already has is not a move: nothing changes.
                    assert_eq!(resp.status, 200, "{from} -> {to}: {}", resp.text);
                    assert_eq!(resp.body, p, "{from} -> {to}");
                    assert_eq!(events_after.len(), events_before, "{from} -> {to}");
                } else if allowed(from, to) {
                    assert_eq!(resp.status, 200, "{from} -> {to}: {}", resp.text);
                    assert_eq!(resp.body["status"], to, "{from} -> {to}");
                    assert_eq!(events_after.len(), events_before + 1);
                    assert_eq!(events_after.last().unwrap(), &format!("payment.{to}"));
                } else {
                    assert_eq!(resp.status, 400, "{from} -> {to} should be refused: {}", resp.text);
                    assert_eq!(resp.body, json!({"status": [format!("Cannot move a payment from \"{from}\" to \"{to}\".")]}));
                    assert_eq!(app.get(&path).body, p, "a refused move changed the payment");
                    assert_eq!(events_after.len(), events_before, "a refused move wrote an event");
                }
            }
        }
    }

    fn success_collects_the_balance_and_dates_it(app) {
        let p = payment_in(&app, "incomplete");
        assert_eq!(num(&p["balance"]), "900");
        assert_eq!(p["payment_date"], Value::Null);
        let done = app.patch(&format!("/payments/{}/", p["id"]), json!({"status": "succeeded"})).expect(200).body;
        assert_eq!(num(&done["balance"]), "0");
        assert!(done["payment_date"].as_str().unwrap() >= p["updated"].as_str().unwrap());
        let dated = app.create_payment(json!({}));
        let given = app.patch(&format!("/payments/{}/", dated["id"]),
            json!({"status": "succeeded", "payment_date": "2026-05-06T07:08:09+02:00"})).expect(200).body;
        assert_eq!(given["payment_date"], "2026-05-06T05:08:09.000000Z");
    }

    fn partial_collections_keep_money_visible(app) {
        let p = app.create_payment(json!({}));
        let path = format!("/payments/{}/", p["id"]);
        let missing = app.patch(&path, json!({"status": "incomplete"})).expect(400);
        assert!(missing.body["amount_collected"][0].as_str().unwrap().starts_with("This field is required"));
        let too_much = app.patch(&path, json!({"status": "incomplete", "amount_collected": 1000})).expect(400);
        assert!(too_much.body["amount_collected"][0].as_str().unwrap().contains("less than the balance (1000)"));
        let stray = app.patch(&path, json!({"amount_collected": 5})).expect(400);
        assert_eq!(stray.body["amount_collected"], json!(["Only allowed when moving a payment to \"incomplete\"."]));
        let part = app.patch(&path, json!({"status": "incomplete", "amount_collected": 400})).expect(200).body;
        assert_eq!(num(&part["balance"]), "600");
        app.patch(&path, json!({"status": "processing"})).expect(200);
        // A failed charge after money came in leaves the payment incomplete, with the reason.
        let failed = app.patch(&path, json!({"status": "failed", "failed_reason": "insufficient_funds"})).expect(200).body;
        assert_eq!(failed["status"], "incomplete");
        assert_eq!(failed["failed_reason"], "insufficient_funds");
        assert_eq!(num(&failed["balance"]), "600");
        let more = app.patch(&path, json!({"status": "incomplete", "amount_collected": "100"})).expect(200).body;
        assert_eq!(num(&more["balance"]), "500");
        assert_eq!(more["failed_reason"], Value::Null);
        // Money collected cannot be cancelled away.
        app.post(&format!("{path}cancel/"), json!({})).expect(400);
    }

    fn failed_reason_is_kept_until_the_next_move(app) {
        let p = payment_in(&app, "failed");
        assert_eq!(p["failed_reason"], "card_declined");
        let path = format!("/payments/{}/", p["id"]);
        // failed_reason is read-only outside a move to failed.
        assert_eq!(app.patch(&path, json!({"failed_reason": "other"})).expect(200).body["failed_reason"], "card_declined");
        let retry = app.patch(&path, json!({"status": "processing"})).expect(200).body;
        assert_eq!(retry["failed_reason"], Value::Null);
    }

    fn cancel_action(app) {
        let p = app.create_payment(json!({}));
        let cancel = format!("/payments/{}/cancel/", p["id"]);
        let cancelled = app.post(&cancel, json!({})).expect(200).body;
        assert_eq!(cancelled["status"], "cancelled");
        let again = app.post(&cancel, json!({})).expect(400);
        assert_eq!(again.body, json!({"status": ["Cannot move a payment from \"cancelled\" to \"cancelled\"."]}));
        let paid = app.create_payment(json!({"status": "succeeded"}));
        app.post(&format!("/payments/{}/cancel/", paid["id"]), json!({})).expect(400);
        app.post("/payments/999999999/cancel/", json!({})).expect(404);
        assert_eq!(app.event_types(&p["id"]), ["payment.created", "payment.cancelled"]);
    }

    fn concurrent_moves_have_exactly_one_winner(app) {
        for _ in 0..3 {
            let p = app.create_payment(json!({}));
            let id = p["id"].clone();
            let handles: Vec<Resp> = (0..8)
                .map(|i| {
                    let app = app.clone();
                    let id = id.clone();
                    std::thread::spawn(move || {
                        if i % 2 == 0 {
                            app.post(&format!("/payments/{id}/cancel/"), json!({}))
                        } else {
                            app.patch(&format!("/payments/{id}/"), json!({"status": "succeeded"}))
                        }
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            let winners: Vec<&Resp> = handles.iter().filter(|r| r.status == 200).collect();
            assert!(handles.iter().all(|r| r.status == 200 || r.status == 400), "{:?}", handles.iter().map(|r| &r.text).collect::<Vec<_>>());
            let final_state = app.get(&format!("/payments/{id}/")).body;
            let terminal = final_state["status"].as_str().unwrap().to_string();
            // Repeating the winning status is a no-op 200, so count winners by the events.
            let moves: Vec<String> = app.event_types(&id).into_iter().filter(|t| t != "payment.created").collect();
            assert_eq!(moves, [format!("payment.{terminal}")], "exactly one move wins");
            assert!(winners.iter().all(|w| w.body["status"] == terminal.as_str()));
        }
    }
}
