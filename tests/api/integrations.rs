//! Integrations: a workspace's provider accounts, their credentials sealed and shown masked.

use crate::both;
use crate::helpers::*;
use diesel::prelude::*;

const SECRET: &str = "sk_test_51QfakeSecretKey000000000000004242";
const HOOK: &str = "whsec_fakeSigningSecret00000000abcd";

fn stripe(app: &App, name: &str) -> Value {
    app.post(
        "/integrations/",
        json!({"gateway": "stripe", "name": name,
        "credentials": {"secret_key": SECRET, "webhook_secret": HOOK}}),
    )
    .expect(201)
    .body
}

/// What the database holds of an integration's credentials, as a dump would show it.
fn stored(app: &App, id: &str) -> (String, String, String) {
    use cobro::db::schema::integrations as table;
    let mut conn = app.server.db.pool.get().unwrap();
    table::table
        .filter(table::id.eq(id))
        .select((
            table::credentials,
            table::credentials_key,
            table::credentials_shown,
        ))
        .first::<(String, String, String)>(&mut **conn)
        .unwrap()
}

both! {
    fn credentials_are_shown_masked_and_stored_sealed(app) {
        let test = app.in_test_mode();
        let created = test.post("/integrations/", json!({"gateway": "stripe", "name": "Stripe Chile",
            "credentials": {"secret_key": SECRET, "webhook_secret": HOOK}})).expect(201);
        let view = &created.body;
        let id = view["id"].as_str().unwrap();
        assert!(id.starts_with("int_") && id.len() == 24, "{id}");
        assert_eq!((view["gateway"].as_str(), view["name"].as_str(), view["enabled"].as_bool(), view["builtin"].as_bool()),
            (Some("stripe"), Some("Stripe Chile"), Some(true), Some(false)));
        assert_eq!(view["credentials"], json!({"secret_key": "sk_test_…4242", "webhook_secret": "whsec_…abcd"}));
        assert_eq!(view["webhook_url"], json!(test.url(&format!("/integrations/{id}/webhook/"))));
        assert_eq!(view["test_mode"], true);
        // Never in full again: not in the answers, the list, nor the events.
        let shown = [created.text.clone(), test.get(&format!("/integrations/{id}/")).expect(200).text,
            test.get("/integrations/").expect(200).text, test.get("/events/?object_type=integration").expect(200).text];
        for text in &shown {
            assert!(!text.contains(SECRET) && !text.contains(HOOK), "{text}");
        }
        assert_eq!(test.events_of("integration", &json!(id)), ["integration.created"]);
        // A database dump shows a sealed value, the key's id and the masked form only.
        let (sealed, key, masked) = stored(&test, id);
        assert!(!sealed.contains("fake") && sealed.len() > 100 && sealed.bytes().all(|b| b.is_ascii_hexdigit()), "{sealed}");
        assert_eq!(key.len(), 16);
        assert!(!masked.contains("fakeSecret") && masked.contains("…4242"), "{masked}");
    }

    fn a_mode_takes_only_its_own_keys(app) {
        let test = app.in_test_mode();
        let live_key = json!({"gateway": "stripe", "name": "Live", "credentials": {"secret_key": "sk_live_51Qreal000000000000000001"}});
        let refused = test.post("/integrations/", live_key.clone()).expect(400);
        assert!(refused.body["credentials"][0].as_str().unwrap().contains("a test-mode integration takes a test secret key"), "{}", refused.text);
        let refused = app.post("/integrations/", json!({"gateway": "stripe", "name": "Test in live",
            "credentials": {"secret_key": SECRET}})).expect(400);
        assert!(refused.text.contains("a live-mode integration takes a live secret key"), "{}", refused.text);
        let made = app.post("/integrations/", live_key).expect(201).body;
        assert_eq!((made["test_mode"].as_bool(), made["credentials"]["secret_key"].as_str()), (Some(false), Some("sk_live_…0001")));
        // Restricted keys work too.
        test.post("/integrations/", json!({"gateway": "stripe", "name": "Restricted",
            "credentials": {"secret_key": "rk_test_51Qrestricted0000000000009"}})).expect(201);
    }

    fn bad_integrations_are_refused_and_change_nothing(app) {
        let test = app.in_test_mode();
        for (body, field) in [
            (json!({"name": "x", "credentials": {"secret_key": SECRET}}), "gateway"),
            (json!({"gateway": "paypal", "name": "x", "credentials": {"secret_key": SECRET}}), "gateway"),
            (json!({"gateway": "sandbox", "name": "x", "credentials": {}}), "gateway"),
            (json!({"gateway": "stripe", "credentials": {"secret_key": SECRET}}), "name"),
            (json!({"gateway": "stripe", "name": "x"}), "credentials"),
            (json!({"gateway": "stripe", "name": "x", "credentials": "sk_test_1"}), "credentials"),
            (json!({"gateway": "stripe", "name": "x", "credentials": {}}), "credentials"),
            (json!({"gateway": "stripe", "name": "x", "credentials": {"secret_key": SECRET, "password": "y"}}), "credentials"),
            (json!({"gateway": "stripe", "name": "x", "credentials": {"secret_key": SECRET, "webhook_secret": "nope"}}), "credentials"),
            (json!({"gateway": "stripe", "name": "x", "credentials": {"secret_key": "pk_test_123456789"}}), "credentials"),
        ] {
            let refused = test.post("/integrations/", body.clone()).expect(400);
            assert!(refused.body[field].is_array(), "{body}: {}", refused.text);
        }
        assert_eq!(test.get("/integrations/").body["count"], 2, "only the built-in ones");
    }

    fn the_built_in_integrations_come_first(app) {
        let test = app.in_test_mode();
        let own = stripe(&test, "Stripe");
        let page = test.get("/integrations/").expect(200).body;
        let ids: Vec<&str> = page["results"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["sandbox", "bank_transfer", own["id"].as_str().unwrap()]);
        assert_eq!((page["count"].as_i64(), page["results"][0]["builtin"].as_bool()), (Some(3), Some(true)));
        // Pages split the list wherever they fall.
        let second = test.get("/integrations/?page_size=2&page=2").expect(200).body;
        assert_eq!(second["results"][0]["id"], own["id"]);
        assert_eq!(test.get("/integrations/sandbox/").expect(200).body["webhook_url"], Value::Null);
        test.patch("/integrations/sandbox/", json!({"enabled": false})).expect(400);
        test.delete("/integrations/bank_transfer/").expect(400);
        // Live mode has no sandbox.
        let live = app.get("/integrations/").expect(200).body;
        assert_eq!(live["count"], 1);
        app.get("/integrations/sandbox/").expect(404);
    }

    fn integrations_change_rotate_and_go(app) {
        let test = app.in_test_mode();
        let made = stripe(&test, "Stripe");
        let path = format!("/integrations/{}/", made["id"].as_str().unwrap());
        let renamed = test.patch(&path, json!({"name": "Stripe CL", "enabled": false})).expect(200).body;
        assert_eq!((renamed["name"].as_str(), renamed["enabled"].as_bool()), (Some("Stripe CL"), Some(false)));
        let rotated = test.patch(&path, json!({"credentials": {"secret_key": "sk_test_51QrotatedKey0000000000009999"}})).expect(200).body;
        assert_eq!(rotated["credentials"], json!({"secret_key": "sk_test_…9999", "webhook_secret": "whsec_…abcd"}), "the webhook secret stays");
        test.patch(&path, json!({"credentials": {"secret_key": "sk_live_51Qnope000000000000000"}})).expect(400);
        test.patch(&path, json!({"gateway": "sandbox"})).expect(200);
        assert_eq!(test.get(&path).body["gateway"], "stripe", "a PATCH does not change what it is");
        assert_eq!(test.events_of("integration", &made["id"]), ["integration.created", "integration.updated", "integration.updated"]);
        test.delete(&path).expect(204);
        test.get(&path).expect(404);
        assert_eq!(test.events_of("integration", &made["id"]).last().unwrap(), "integration.deleted");
    }

    fn integrations_are_scoped_by_workspace_and_mode(app) {
        let test = app.in_test_mode();
        let made = stripe(&test, "Stripe");
        let path = format!("/integrations/{}/", made["id"].as_str().unwrap());
        app.get(&path).expect(404);
        let stranger = app.stranger().in_test_mode();
        stranger.get(&path).expect(404);
        stranger.patch(&path, json!({"name": "mine"})).expect(404);
        stranger.delete(&path).expect(404);
        assert_eq!(stranger.get("/integrations/").body["count"], 2);
        test.get(&path).expect(200);
        test.get("/integrations/int_doesnotexist00000000/").expect(404);
        test.get("/integrations/not-an-id/").expect(404);
    }
}
