//! One delivery on the wire: the body, both signatures, the POST with its timeout, and the
//! refusal of private addresses.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::events::EventView;

/// Only a 2xx within this time counts as delivered.
pub const TIMEOUT: Duration = Duration::from_secs(6);

/// What the receiver did with a delivery.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx.
    Delivered(u16),
    /// Another status (a 3xx counts: redirects are not followed).
    Refused(u16),
    /// No HTTP answer: refused connection, timeout, TLS, a private address.
    Unreachable(String),
}

/// The body: Piriod's `{"event", "object_id"}`, plus the event's id, time and object.
pub fn body(event: &EventView) -> String {
    json!({
        "event": event.event_type,
        "object_id": event.object_id,
        "id": event.id,
        "created": event.created,
        "data": event.data,
    })
    .to_string()
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// `x-piriod-signature`, as Piriod computes it: HMAC-SHA256 of the payload's values in order
/// (the event type, then the object id), concatenated.
pub fn piriod_signature(secret: &str, event_type: &str, object_id: &str) -> String {
    hmac_hex(secret, format!("{event_type}{object_id}").as_bytes())
}

/// `cobro-signature: t=<unix>,v1=<hex>`: HMAC-SHA256 of `"<t>.<body>"`, so a receiver can
/// refuse old or replayed deliveries and bodies changed on the way.
pub fn cobro_signature(secret: &str, unix_time: i64, body: &str) -> String {
    let v1 = hmac_hex(secret, format!("{unix_time}.{body}").as_bytes());
    format!("t={unix_time},v1={v1}")
}

/// POSTs a delivery and says what came of it.
pub fn send(
    url: &str,
    secret: &str,
    event: &EventView,
    allow_private: bool,
    unix_time: i64,
) -> Outcome {
    if !allow_private {
        if let Err(why) = check_public(url) {
            return Outcome::Unreachable(why);
        }
    }
    let body = body(event);
    let result = agent()
        .post(url)
        .set("Content-Type", "application/json")
        .set("User-Agent", "cobro-webhooks/1")
        .set(
            "x-piriod-signature",
            &piriod_signature(secret, &event.event_type, &event.object_id),
        )
        .set(
            "cobro-signature",
            &cobro_signature(secret, unix_time, &body),
        )
        .send_string(&body);
    match result {
        Ok(response) if (200..300).contains(&response.status()) => {
            Outcome::Delivered(response.status())
        }
        Ok(response) => Outcome::Refused(response.status()),
        Err(ureq::Error::Status(status, _)) => Outcome::Refused(status),
        Err(ureq::Error::Transport(transport)) => Outcome::Unreachable(transport.to_string()),
    }
}

fn agent() -> ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT
        .get_or_init(|| {
            let mut builder = ureq::AgentBuilder::new().timeout(TIMEOUT).redirects(0);
            match native_tls::TlsConnector::new() {
                Ok(tls) => builder = builder.tls_connector(Arc::new(tls)),
                Err(err) => log::error!("webhooks: no TLS ({err}); https deliveries will fail"),
            }
            builder.build()
        })
        .clone()
}

/// Refuses a URL whose host is, or resolves to, a loopback, private, link-local or otherwise
/// internal address (so that a webhook cannot probe the server's own network). Checked when
/// a webhook is saved and again before each delivery (a name may resolve elsewhere later).
pub fn check_public(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    let host = parsed.host_str().ok_or("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A name that does not resolve (yet) is no internal address: sending will fail
        // with its own error, and is checked again then.
        Err(_) => (host, port)
            .to_socket_addrs()
            .map(|addresses| addresses.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    match addresses.into_iter().find(|ip| is_internal(*ip)) {
        Some(ip) => Err(format!("{host} is an internal address ({ip})")),
        None => Ok(()),
    }
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

/// The object a `ping` carries.
pub fn ping_data(webhook_id: i64) -> Value {
    json!({"webhook": webhook_id, "message": "A test event from cobro."})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://10.1.2.3/",
            "http://192.168.0.10/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
        ] {
            assert!(check_public(url).is_err(), "{url}");
        }
        assert!(check_public("https://93.184.216.34/hook").is_ok());
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231-style known answer, computed independently with Python's hmac module.
        assert_eq!(
            cobro_signature("whsecret_x", 1700000000, "{}"),
            format!(
                "t=1700000000,v1={}",
                hmac_hex("whsecret_x", b"1700000000.{}")
            )
        );
        assert_eq!(
            hmac_hex("key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_eq!(
            piriod_signature("key", "payment.created", "42"),
            hmac_hex("key", b"payment.created42")
        );
    }
}
