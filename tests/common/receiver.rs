//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every request
//! with its arrival and answer times, answers after an optional delay, and answers the
//! statuses it is told to (then 200s). Shared by the API tests and the binary-driven ones.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// In `fail_next`: hold the request for 7 s and close without answering (cobro gives up
/// after 6 s).
pub const NO_ANSWER: u16 = 0;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status answered; `NO_ANSWER` for none.
    pub answered: u16,
    /// Hits are listed in the order they arrived.
    pub arrived: Instant,
    /// When the answer is (or was) written.
    pub answered_at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// The event's id in the body.
    pub fn event_id(&self) -> i64 {
        self.json()["id"].as_i64().unwrap()
    }

    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Default)]
struct Plan {
    script: VecDeque<u16>,
    delay: Duration,
    /// Every `n`th request (counting from 1) is answered with this status.
    every: Option<(usize, u16)>,
    seen: usize,
}

pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    plan: Arc<Mutex<Plan>>,
}

impl Receiver {
    /// Starts listening; each connection is served on a thread of its own.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(Plan::default()));
        let (h, p) = (hits.clone(), plan.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (h, p) = (h.clone(), p.clone());
                std::thread::spawn(move || serve(stream, &h, &p));
            }
        });
        Receiver { url, hits, plan }
    }

    /// The next requests get these statuses, in order (`NO_ANSWER`: none).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.plan.lock().unwrap().script.extend(statuses);
    }

    /// Forgets the statuses still to come: from now on, 200s.
    pub fn recover(&self) {
        self.plan.lock().unwrap().script.clear();
    }

    /// Every answer comes after `delay`.
    pub fn answer_after(&self, delay: Duration) {
        self.plan.lock().unwrap().delay = delay;
    }

    /// Every `n`th request is answered `status`.
    pub fn fail_every(&self, n: usize, status: u16) {
        self.plan.lock().unwrap().every = Some((n, status));
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `done` holds of the hits (or fails after `limit`).
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        loop {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} requests, the last: {:#?}",
                hits.len(),
                hits.iter().rev().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(mut stream: TcpStream, hits: &Mutex<Vec<Hit>>, plan: &Mutex<Plan>) {
    let arrived = Instant::now();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    // A connection closed before its whole request arrived (its sender was killed, say)
    // is no request: it is not recorded, and gets no answer.
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, delay) = {
        let mut plan = plan.lock().unwrap();
        plan.seen += 1;
        let status = match (plan.script.pop_front(), plan.every) {
            (Some(status), _) => status,
            (None, Some((n, status))) if plan.seen.is_multiple_of(n) => status,
            _ => 200,
        };
        (status, plan.delay)
    };
    let delay = if status == NO_ANSWER {
        Duration::from_secs(7)
    } else {
        delay
    };
    hits.lock().unwrap().push(Hit {
        headers,
        body: String::from_utf8_lossy(&body).into(),
        answered: status,
        arrived,
        answered_at: arrived + delay,
    });
    std::thread::sleep(delay);
    if status != NO_ANSWER {
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
