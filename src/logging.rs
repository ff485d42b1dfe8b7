//! The log: text by default, one JSON object per line with `COBRO_LOG_FORMAT=json`. Either
//! way each line carries the id of the request it belongs to (`http::request_id`), and the
//! request line its fields (method, route, status, duration, actor). No secret is ever a
//! field: routes are templates and actors are masked.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

/// Starts the log as `COBRO_LOG_FORMAT` (`text` or `json`) and `RUST_LOG` say.
pub fn init() {
    let json = std::env::var("COBRO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if json {
        builder.format(|out, record| {
            let mut line = Map::new();
            line.insert("timestamp".into(), Json::String(timestamp()));
            line.insert("level".into(), Json::String(record.level().to_string()));
            line.insert("target".into(), Json::String(record.target().to_string()));
            if let Some(id) = crate::http::request_id::current() {
                line.insert("request_id".into(), Json::String(id));
            }
            line.insert("message".into(), Json::String(record.args().to_string()));
            let _ = record.key_values().visit(&mut Fields(&mut line));
            writeln!(out, "{}", Json::Object(line))
        });
    } else {
        builder.format(|out, record| {
            let id = crate::http::request_id::current();
            let id = id.as_deref().map_or(String::new(), |id| format!(" {id}"));
            let mut actor = String::new();
            let _ = record.key_values().visit(&mut ActorOnly(&mut actor));
            writeln!(
                out,
                "[{} {:<5} {}{id}] {}{actor}",
                timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A record's fields, as JSON values (numbers stay numbers).
struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            Json::from(n)
        } else if let Some(n) = value.to_f64() {
            serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
        } else {
            Json::String(value.to_string())
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}

/// In the text log, a request line ends with its actor (the rest is in the line itself).
struct ActorOnly<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for ActorOnly<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        if key.as_str() == "actor" {
            *self.0 = format!(" {value}");
        }
        Ok(())
    }
}
