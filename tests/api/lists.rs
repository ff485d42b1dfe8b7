//! Listing payments: DRF pagination, every filter and ordering, and filter errors.

use crate::both;
use crate::helpers::*;

fn list(app: &App, query: &str) -> Value {
    app.get(&format!("/payments/?page_size=100&{query}"))
        .expect(200)
        .body
}

#[track_caller]
fn filtered(app: &App, query: &str) -> Vec<i64> {
    let page = list(app, query);
    let found = ids(&page);
    assert_eq!(
        page["count"].as_i64().unwrap() as usize,
        found.len(),
        "count of {query}"
    );
    found
}

/// The count the API gives for `query`, and the same count taken by counting rows (a filter
/// that matches everything sends the count down that path).
#[track_caller]
fn both_counts(app: &App, query: &str) -> (i64, i64) {
    let kept = list(app, query)["count"].as_i64().unwrap();
    let counted = list(app, &format!("{query}&amount__gte=0"))["count"]
        .as_i64()
        .unwrap();
    (kept, counted)
}

both! {
    fn counts_stay_exact_through_moves_deletes_and_concurrent_creates(app) {
        let clp: Vec<i64> = (0..6).map(|_| app.create_payment(json!({}))["id"].as_i64().unwrap()).collect();
        let usd: Vec<i64> = (0..3).map(|_| app.create_payment(json!({"currency": "USD", "amount": "10.50"}))["id"].as_i64().unwrap()).collect();
        app.in_test_mode().create_payment(json!({}));
        app.patch(&format!("/payments/{}/", clp[0]), json!({"status": "succeeded"})).expect(200);
        app.patch(&format!("/payments/{}/", clp[1]), json!({"status": "succeeded"})).expect(200);
        app.post(&format!("/payments/{}/cancel/", usd[0]), json!({})).expect(200);
        app.patch(&format!("/payments/{}/", clp[2]), json!({"currency": "USD", "amount": "3"})).expect(200);
        app.delete(&format!("/payments/{}/", clp[3])).expect(204);
        app.patch(&format!("/payments/{}/", clp[4]), json!({"description": "no count moves"})).expect(200);
        // A refused move changes no count.
        app.patch(&format!("/payments/{}/", usd[0]), json!({"status": "succeeded"})).expect(400);
        let expected = [
            ("", 8),
            ("status=succeeded", 2),
            ("status=cancelled", 1),
            ("status=requires_payment_method", 5),
            ("status__in=succeeded,cancelled", 3),
            ("currency=USD", 4),
            ("currency=CLP", 4),
            ("currency=USD&status=requires_payment_method", 3),
            ("status=failed", 0),
        ];
        for (query, count) in expected {
            assert_eq!(both_counts(&app, query), (count, count), "{query}");
        }
        assert_eq!(both_counts(&app.in_test_mode(), ""), (1, 1));
        assert_eq!(both_counts(&app.stranger(), ""), (0, 0));
        // Concurrent creates and moves in one workspace: every one counted.
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..5 {
                        let id = app.create_payment(json!({}))["id"].as_i64().unwrap();
                        app.patch(&format!("/payments/{id}/"), json!({"status": "succeeded"})).expect(200);
                    }
                });
            }
        });
        assert_eq!(both_counts(&app, ""), (48, 48));
        assert_eq!(both_counts(&app, "status=succeeded"), (42, 42));
    }

    fn pagination_counts_and_links(app) {
        let created: Vec<i64> = (0..25).map(|i| app.create_payment(json!({"description": format!("p{i}")}))["id"].as_i64().unwrap()).collect();
        let newest_first: Vec<i64> = created.iter().rev().copied().collect();
        let first = app.get("/payments/").expect(200).body;
        assert_eq!(first["count"], 25);
        assert_eq!(ids(&first), newest_first[..20]);
        assert_eq!(first["previous"], Value::Null);
        assert_eq!(first["next"], app.url("/payments/?page=2"));
        let second = app.get("/payments/?status=requires_payment_method&page_size=10&page=2").expect(200).body;
        assert_eq!(ids(&second), newest_first[10..20]);
        assert_eq!(second["next"], app.url("/payments/?status=requires_payment_method&page_size=10&page=3"));
        assert_eq!(second["previous"], app.url("/payments/?status=requires_payment_method&page_size=10&page=1"));
        let last = app.get("/payments/?page_size=10&page=3").expect(200).body;
        assert_eq!(ids(&last), newest_first[20..]);
        assert_eq!(last["next"], Value::Null);
        assert_eq!(ids(&app.get("/payments/?page_size=10&page=last").expect(200).body), newest_first[20..]);
        for bad in ["4", "0", "-1", "abc", "99999999999999999999"] {
            let resp = app.get(&format!("/payments/?page_size=10&page={bad}")).expect(404);
            assert_eq!(resp.body, json!({"detail": "Invalid page."}));
        }
        // page_size: capped at 100; nonsense falls back to 20.
        assert_eq!(ids(&app.get("/payments/?page_size=1000").body).len(), 25);
        assert_eq!(ids(&app.get("/payments/?page_size=abc").body).len(), 20);
        // An empty list has one (empty) page.
        let empty = app.get("/payments/?customer=nobody").expect(200).body;
        assert_eq!((empty["count"].clone(), empty["results"].clone()), (json!(0), json!([])));
    }

    fn exact_filters(app) {
        let (s11, s12) = (app.source_id(), app.source_id());
        let (cus_a, cus_b) = (app.customer_id("A"), app.customer_id("B"));
        let (inv_a, inv_b) = (app.open_invoice(&cus_a, "CLP", "5000"), app.open_invoice(&cus_b, "USD", "5.00"));
        let a = app.create_payment(json!({"customer": cus_a, "invoice": inv_a, "subscription": "sub_a", "source": s11, "currency": "CLP"}))["id"].as_i64().unwrap();
        let b = app.create_payment(json!({"customer": cus_b, "invoice": inv_b, "amount": "5.00", "currency": "USD", "source": s12}))["id"].as_i64().unwrap();
        let c = app.create_payment(json!({"status": "succeeded", "customer": cus_a}))["id"].as_i64().unwrap();
        let d = app.create_payment(json!({"status": "processing"}))["id"].as_i64().unwrap();
        app.post(&format!("/payments/{d}/cancel/"), json!({})).expect(400);
        assert_eq!(filtered(&app, &format!("customer={cus_a}")), [c, a]);
        assert_eq!(filtered(&app, &format!("invoice={inv_b}")), [b]);
        assert_eq!(filtered(&app, "subscription=sub_a"), [a]);
        assert_eq!(filtered(&app, "currency=usd"), [b]);
        assert_eq!(filtered(&app, &format!("source={s12}")), [b]);
        assert_eq!(filtered(&app, "status=succeeded"), [c]);
        assert_eq!(filtered(&app, "status__in=processing,succeeded"), [d, c]);
        assert_eq!(filtered(&app, &format!("status=processing&customer={cus_a}")), Vec::<i64>::new());
        assert_eq!(filtered(&app, "customer=' OR 1=1 --"), Vec::<i64>::new());
        assert_eq!(filtered(&app, &format!("customer={cus_a}%25")), Vec::<i64>::new());
    }

    fn range_filters(app) {
        let clp = app.create_payment(json!({"amount": 500, "currency": "CLP", "date": "2026-01-10"}))["id"].as_i64().unwrap();
        let usd = app.create_payment(json!({"amount": "500.50", "currency": "USD", "date": "2026-02-10"}))["id"].as_i64().unwrap();
        let clf = app.create_payment(json!({"amount": "0.0001", "currency": "CLF", "date": "2026-03-10",
            "status": "succeeded", "payment_date": "2026-03-11T12:00:00Z"}))["id"].as_i64().unwrap();
        // Amounts compare in each payment's own currency, exactly.
        assert_eq!(filtered(&app, "amount__gte=500"), [usd, clp]);
        assert_eq!(filtered(&app, "amount__gte=500.5"), [usd]);
        assert_eq!(filtered(&app, "amount__gte=500.51"), Vec::<i64>::new());
        assert_eq!(filtered(&app, "amount__lte=0.0001"), [clf]);
        assert_eq!(filtered(&app, "amount__gte=0.0001&amount__lte=500"), [clf, clp]);
        assert_eq!(filtered(&app, "amount__lte=99999999999999999999999"), [clf, usd, clp]);
        assert_eq!(filtered(&app, "date__gte=2026-02-01"), [clf, usd]);
        assert_eq!(filtered(&app, "date__lte=2026-02-10"), [usd, clp]);
        assert_eq!(filtered(&app, "payment_date__gte=2026-03-11T00:00:00Z"), [clf]);
        assert_eq!(filtered(&app, "payment_date__lte=2026-03-11"), Vec::<i64>::new());
        let created = app.get(&format!("/payments/{usd}/")).body["created"].as_str().unwrap().to_string();
        let query = |op: &str| format!("created__{op}={}", created.replace('+', "%2B"));
        assert_eq!(filtered(&app, &query("gte")), [clf, usd]);
        assert_eq!(filtered(&app, &query("lte")), [usd, clp]);
        assert_eq!(filtered(&app, "created__gte=2000-01-01"), [clf, usd, clp]);
    }

    fn metadata_and_search(app) {
        let a = app.create_payment(json!({"description": "Annual PLAN for ACME", "metadata": {"order": "A-1", "n": 5, "vip": true}}))["id"].as_i64().unwrap();
        let b = app.create_payment(json!({"description": "100% discount_plan", "metadata": {"order": "B-2"}}))["id"].as_i64().unwrap();
        assert_eq!(filtered(&app, "metadata__order=A-1"), [a]);
        assert_eq!(filtered(&app, "metadata__n=5&metadata__vip=true"), [a]);
        assert_eq!(filtered(&app, "metadata__order=A-1&metadata__n=6"), Vec::<i64>::new());
        assert_eq!(filtered(&app, "search=plan"), [b, a]);
        assert_eq!(filtered(&app, "search=acme"), [a]);
        // LIKE wildcards in a search are literal characters.
        assert_eq!(filtered(&app, "search=100%25"), [b]);
        // "l_p" would match "Annual PLAN" if `_` were a wildcard.
        assert_eq!(filtered(&app, "search=l_p"), Vec::<i64>::new());
        assert_eq!(filtered(&app, "search=t_plan"), [b]);
        assert_eq!(filtered(&app, "search=discount_"), [b]);
        // Non-ASCII text finds itself on both backends.
        let c = app.create_payment(json!({"description": "Pago ÑUÑOA éxito"}))["id"].as_i64().unwrap();
        assert_eq!(filtered(&app, "search=%C3%91U%C3%91OA"), [c]);
        assert_eq!(filtered(&app, "search=pago%20%C3%91u"), [c]);
        // An empty metadata filter is no filter, as every other empty filter.
        assert_eq!(filtered(&app, "metadata__order=").len(), 3);
        // Metadata changes are seen by the filter.
        app.patch(&format!("/payments/{a}/"), json!({"metadata": {"order": null}})).expect(200);
        assert_eq!(filtered(&app, "metadata__order=A-1"), Vec::<i64>::new());
    }

    fn orderings(app) {
        let a = app.create_payment(json!({"amount": "2.50", "currency": "USD", "date": "2026-03-01", "status": "succeeded", "payment_date": "2026-03-05T00:00:00Z"}))["id"].as_i64().unwrap();
        let b = app.create_payment(json!({"amount": 3, "currency": "CLP", "date": "2026-01-01", "status": "succeeded", "payment_date": "2026-03-01T00:00:00Z"}))["id"].as_i64().unwrap();
        let c = app.create_payment(json!({"amount": "2.4999", "currency": "CLF", "date": "2026-02-01", "status": "succeeded", "payment_date": "2026-03-09T00:00:00Z"}))["id"].as_i64().unwrap();
        assert_eq!(filtered(&app, ""), [c, b, a]);
        assert_eq!(filtered(&app, "ordering=created"), [a, b, c]);
        assert_eq!(filtered(&app, "ordering=-created"), [c, b, a]);
        assert_eq!(filtered(&app, "ordering=id"), [a, b, c]);
        assert_eq!(filtered(&app, "ordering=-id"), [c, b, a]);
        assert_eq!(filtered(&app, "ordering=date"), [b, c, a]);
        assert_eq!(filtered(&app, "ordering=-date"), [a, c, b]);
        assert_eq!(filtered(&app, "ordering=payment_date"), [b, a, c]);
        assert_eq!(filtered(&app, "ordering=-payment_date"), [c, a, b]);
        // Not yet paid: last either way.
        let unpaid = app.create_payment(json!({}))["id"].as_i64().unwrap();
        assert_eq!(filtered(&app, "ordering=payment_date"), [b, a, c, unpaid]);
        assert_eq!(filtered(&app, "ordering=-payment_date"), [c, a, b, unpaid]);
        // By value in each currency: 2.4999 < 2.50 < 3.
        assert_eq!(filtered(&app, "ordering=amount"), [c, a, b, unpaid]);
        assert_eq!(filtered(&app, "ordering=-amount"), [unpaid, b, a, c]);
    }

    fn invalid_filters_are_400_naming_the_field(app) {
        app.create_payment(json!({}));
        for (query, field, message) in [
            ("status=nope", "status", "Select a valid choice. nope is not one of the available choices."),
            ("status__in=failed,nope", "status__in", "Select a valid choice. nope is not one of the available choices."),
            ("currency=XYZ", "currency", "Select a valid choice. XYZ is not one of the available choices."),
            ("ordering=colour", "ordering", "Select a valid choice. colour is not one of the available choices."),
            ("amount__gte=abc", "amount__gte", "Enter a number."),
            ("amount__lte=1e3", "amount__lte", "Enter a number."),
            ("date__gte=yesterday", "date__gte", "Enter a valid date."),
            ("created__lte=2026-13-01", "created__lte", "Enter a valid date/time."),
            ("payment_date__gte=soon", "payment_date__gte", "Enter a valid date/time."),
            ("source=abc", "source", "Enter a whole number."),
            ("date__lte=%2B20000-01-01", "date__lte", "Enter a valid date."),
            ("created__gte=-0044-03-15", "created__gte", "Enter a valid date/time."),
            ("customer=%00", "customer", "Null characters are not allowed."),
            ("metadata__k=a%00", "metadata__k", "Null characters are not allowed."),
            ("search=%00", "search", "Null characters are not allowed."),
        ] {
            let resp = app.get(&format!("/payments/?{query}")).expect(400);
            assert_eq!(resp.body, json!({field: [message]}), "{query}");
        }
        // An empty filter value is no filter (django-filter's habit).
        assert_eq!(app.get("/payments/?status=&customer=").expect(200).body["count"], 1);
    }
}
