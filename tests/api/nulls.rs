//! Searches and filters over columns that may be NULL, with NULLs in scope: a missing value
//! matches nothing and breaks nothing, on both backends alike.

use crate::both;
use crate::helpers::*;

fn names(page: &Value) -> Vec<&str> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

both! {
    fn customer_searches_and_filters_skip_missing_values(app) {
        // Ana has nothing but a name; Bea has every field.
        app.post("/customers/", json!({"name": "Ana Pérez"})).expect(201);
        app.post("/customers/", json!({"name": "Bea", "email": "bea@example.cl", "tax_id": "76.123.456-K", "country": "CL"})).expect(201);
        for (query, expected) in [
            ("search=nothing-matches", vec![]),
            ("search=PÉREZ", vec!["Ana Pérez"]),
            ("search=bea@", vec!["Bea"]),
            ("search=456-k", vec!["Bea"]),
            ("email=BEA@example.cl", vec!["Bea"]),
            ("tax_id=76.123.456-K", vec!["Bea"]),
            ("country=cl", vec!["Bea"]),
            ("name=ana", vec!["Ana Pérez"]),
            ("name=nobody", vec![]),
        ] {
            let page = app.get(&format!("/customers/?{query}")).expect(200).body;
            assert_eq!(names(&page), expected, "{query}");
            assert_eq!(page["count"], expected.len(), "{query}");
        }
    }

    fn payment_filters_skip_missing_references(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        let source = test.source_id();
        let bare = test.create_payment(json!({}));
        let named = test.create_payment(json!({"customer": customer, "subscription": "sub_1", "source": source,
            "status": "succeeded", "payment_date": "2026-11-30T10:00:00Z", "metadata": {"order": "A-1"}, "description": "Gift card"}));
        for query in [format!("customer={customer}"), "subscription=sub_1".into(), format!("source={source}"),
                      "payment_date__gte=2026-11-01T00:00:00Z".into(), "payment_date__lte=2026-12-31T00:00:00Z".into(),
                      "metadata__order=A-1".into(), "search=GIFT".into()] {
            let page = test.get(&format!("/payments/?{query}")).expect(200).body;
            assert_eq!(ids(&page), [named["id"].as_i64().unwrap()], "{query}");
        }
        for query in ["customer=cus_none", "subscription=none", "invoice=inv_none", "metadata__order=none", "search=nothing-matches"] {
            assert_eq!(test.get(&format!("/payments/?{query}")).expect(200).body["count"], 0, "{query}");
        }
        // Unpaid payments (no payment_date) come last in either direction.
        for ordering in ["payment_date", "-payment_date"] {
            let page = test.get(&format!("/payments/?ordering={ordering}")).expect(200).body;
            assert_eq!(ids(&page), [named["id"].as_i64().unwrap(), bare["id"].as_i64().unwrap()], "{ordering}");
        }
    }

    fn source_and_invoice_filters_skip_missing_values(app) {
        let test = app.in_test_mode();
        let customer = test.customer_id("Ana");
        test.create_source(json!({}));
        let owned = test.create_source(json!({"customer": customer, "description": "Visa"}));
        let page = test.get(&format!("/sources/?customer={customer}")).expect(200).body;
        assert_eq!(ids(&page), [owned["id"].as_i64().unwrap()]);
        assert_eq!(test.get("/sources/?customer=cus_none").expect(200).body["count"], 0);
        // An invoice without a description, beside one with it.
        let invoice = test.open_invoice(&customer, "CLP", "100");
        test.post("/invoices/", json!({"customer": customer, "currency": "CLP", "description": "Plan", "due_date": "2026-12-31",
            "lines": [{"name": "Plan", "unit_amount": "10"}]})).expect(201);
        let finalized = test.get(&format!("/invoices/?customer={customer}&status=finalized")).expect(200).body;
        assert_eq!(finalized["count"], 1);
        assert_eq!(finalized["results"][0]["id"], invoice);
        assert_eq!(test.get(&format!("/invoices/?customer={customer}")).expect(200).body["count"], 2);
    }
}
