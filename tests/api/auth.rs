//! Authentication, the workspace and mode headers, and workspace secret keys (API.md §1).

use crate::both;
use crate::helpers::*;

fn detail(resp: &Resp) -> &str {
    resp.body["detail"].as_str().unwrap_or("")
}

both! {
    fn no_credentials_is_401_not_provided(app) {
        let resp = send("GET", &app.url("/payments/"), &[("x-simple-workspace", &app.workspace)], None).expect(401);
        assert_eq!(resp.body, json!({"detail": "Authentication credentials were not provided."}));
        assert_eq!(resp.header("www-authenticate"), Some("Token"));
        let basic = send("GET", &app.url("/payments/"), &[("Authorization", "Basic dXNlcjpwYXNz")], None).expect(401);
        assert_eq!(detail(&basic), "Authentication credentials were not provided.");
    }

    fn malformed_token_headers_get_drf_messages(app) {
        let empty = send("GET", &app.url("/payments/"), &[("Authorization", "Token")], None).expect(401);
        assert_eq!(detail(&empty), "Invalid token header. No credentials provided.");
        let spaced = send("GET", &app.url("/payments/"), &[("Authorization", "Token a b")], None).expect(401);
        assert_eq!(detail(&spaced), "Invalid token header. Token string should not contain spaces.");
    }

    fn unknown_token_is_401_invalid(app) {
        let headers = [("Authorization", "Token 0000000000000000000000000000000000000000"), ("x-simple-workspace", app.workspace.as_str())];
        let resp = send("GET", &app.url("/payments/"), &headers, None).expect(401);
        assert_eq!(resp.body, json!({"detail": "Invalid token."}));
        // The token is checked before the workspace header.
        let resp = send("GET", &app.url("/payments/"), &headers[..1], None).expect(401);
        assert_eq!(detail(&resp), "Invalid token.");
    }

    fn missing_workspace_header_is_400(app) {
        let auth = format!("Token {}", app.token);
        // Checked before the test-mode header.
        let headers = [("Authorization", auth.as_str()), ("x-piriod-test-mode", "maybe")];
        let resp = send("GET", &app.url("/payments/"), &headers, None).expect(400);
        assert_eq!(resp.body, json!({"non_field_errors": ["x-simple-workspace header is required."]}));
    }

    fn unknown_or_foreign_workspace_is_403(app) {
        let other = app.stranger();
        let auth = format!("Token {}", app.token);
        for workspace in ["acc_doesnotexist", other.workspace.as_str()] {
            // Membership is checked before the test-mode header.
            let headers = [("Authorization", auth.as_str()), ("x-simple-workspace", workspace), ("x-piriod-test-mode", "maybe")];
            let resp = send("GET", &app.url("/payments/"), &headers, None).expect(403);
            assert_eq!(resp.body, json!({"detail": "You do not have permission to perform this action."}));
        }
        // Writes are refused the same way and change nothing.
        let mut intruder = app.clone();
        intruder.workspace = other.workspace.clone();
        intruder.post("/payments/", json!({"amount": 1, "currency": "CLP", "date": "2026-01-01", "description": "x"})).expect(403);
        assert_eq!(other.get("/payments/").expect(200).body["count"], 0);
    }

    fn invalid_test_mode_header_is_400(app) {
        let resp = app.send("GET", "/payments/", None, &[("x-piriod-test-mode", "yes please")]).expect(400);
        assert_eq!(resp.body, json!({"non_field_errors": ["x-piriod-test-mode header must be true or false."]}));
    }

    fn test_mode_header_accepts_booleans_in_any_case(app) {
        let created = app.in_test_mode().create_payment(json!({}));
        for value in ["true", "TRUE", "True", "1"] {
            let resp = app.send("GET", &format!("/payments/{}/", created["id"]), None, &[("x-piriod-test-mode", value)]).expect(200);
            assert_eq!(resp.body["test_mode"], true);
        }
        for value in ["false", "FALSE", "0"] {
            app.send("GET", &format!("/payments/{}/", created["id"]), None, &[("x-piriod-test-mode", value)]).expect(404);
        }
    }

    fn rotated_token_stops_working_at_once(app) {
        app.get("/payments/").expect(200);
        let mut conn = app.server.db.pool.get().unwrap();
        let new_token = cobro::accounts::rotate_token(&mut conn, &app.email).unwrap();
        drop(conn);
        assert_eq!(app.get("/payments/").expect(401).body, json!({"detail": "Invalid token."}));
        let renewed = App { token: new_token, ..app.clone() };
        renewed.get("/payments/").expect(200);
    }

    fn a_member_added_later_gets_access(app) {
        let colleague = app.stranger();
        let mut as_colleague = colleague.clone();
        as_colleague.workspace = app.workspace.clone();
        as_colleague.get("/payments/").expect(403);
        app.add_member(&colleague.email, cobro::accounts::roles::Role::Developer);
        as_colleague.get("/payments/").expect(200);
    }

    fn secret_keys_carry_workspace_and_mode(app) {
        let test_key = app.secret_key(true);
        let live_key = app.secret_key(false);
        assert!(test_key.starts_with("sk_test_") && live_key.starts_with("sk_live_"));
        let body = json!({"amount": 5, "currency": "CLP", "date": "2026-01-01", "description": "by key"}).to_string();
        for (scheme, key, test_mode) in [("Token", &test_key, true), ("Bearer", &live_key, false)] {
            let auth = format!("{scheme} {key}");
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
            let created = send("POST", &app.url("/payments/"), &headers, Some(&body)).expect(201).body;
            assert_eq!(created["test_mode"], test_mode);
            // Visible to the user in the same workspace and mode.
            let user = if test_mode { app.in_test_mode() } else { app.clone() };
            user.get(&format!("/payments/{}/", created["id"])).expect(200);
        }
    }

    fn secret_key_headers_may_not_contradict_it(app) {
        let key = format!("Bearer {}", app.secret_key(true));
        let other = app.stranger();
        let url = app.url("/payments/");
        send("GET", &url, &[("Authorization", &key), ("x-simple-workspace", &app.workspace), ("x-piriod-test-mode", "true")], None).expect(200);
        send("GET", &url, &[("Authorization", &key), ("x-simple-workspace", &other.workspace)], None).expect(403);
        send("GET", &url, &[("Authorization", &key), ("x-piriod-test-mode", "false")], None).expect(403);
        send("GET", &url, &[("Authorization", &key), ("x-piriod-test-mode", "nope")], None).expect(400);
    }

    fn bearer_is_only_for_secret_keys(app) {
        let bearer = format!("Bearer {}", app.token);
        let resp = send("GET", &app.url("/payments/"), &[("Authorization", &bearer), ("x-simple-workspace", &app.workspace)], None).expect(401);
        assert_eq!(detail(&resp), "Authentication credentials were not provided.");
        let unknown = send("GET", &app.url("/payments/"), &[("Authorization", "Bearer sk_test_nothing")], None).expect(401);
        assert_eq!(detail(&unknown), "Invalid token.");
    }

    fn credentials_are_checked_before_the_body(app) {
        let url = app.url("/payments/");
        let huge = "y".repeat(70_000);
        let bad_token = [("Authorization", "Token 0000000000000000000000000000000000000000"), ("Content-Type", "text/plain")];
        assert_eq!(send("POST", &url, &bad_token, Some("not json")).expect(401).body["detail"], "Invalid token.");
        assert_eq!(send("POST", &url, &bad_token, Some(&huge)).expect(401).body["detail"], "Invalid token.");
        let json = [("Content-Type", "application/json")];
        send("POST", &url, &json, Some("{broken")).expect(401);
        let auth = format!("Token {}", app.token);
        let no_workspace = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let resp = send("POST", &url, &no_workspace, Some("{broken")).expect(400);
        assert_eq!(resp.body, json!({"non_field_errors": ["x-simple-workspace header is required."]}));
        let other = app.stranger();
        let foreign = [("Authorization", auth.as_str()), ("x-simple-workspace", other.workspace.as_str()), ("Content-Type", "text/plain")];
        send("POST", &url, &foreign, Some("x")).expect(403);
    }
}
