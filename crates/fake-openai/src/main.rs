//! Runs the fake server by hand:
//! `cargo run -p fake-openai -- --port 8089 --rpm 3000 --tpm 600000 --latency-ms 400 --faults 0.05`

use std::time::Duration;

use fake_openai::{FakeConfig, FakeServer, Faults, Latency};

fn main() -> std::io::Result<()> {
    let mut config = FakeConfig::default();
    let mut args = std::env::args().skip(1);
    let mut port: Option<u16> = None;
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let number = |v: &str| v.parse::<f64>().ok();
        match (flag.as_str(), number(&value)) {
            ("--port", Some(n)) => port = Some(n as u16),
            ("--rpm", Some(n)) => config.requests_per_minute = Some(n as u32),
            ("--tpm", Some(n)) => config.tokens_per_minute = Some(n as u32),
            ("--latency-ms", Some(n)) => {
                config.latency = Latency::LogNormal {
                    median: Duration::from_secs_f64(n / 1000.0),
                    sigma: 0.4,
                }
            }
            ("--faults", Some(p)) => config.faults = Faults::uniform(p),
            _ => {
                eprintln!(
                    "usage: fake-openai [--port N] [--rpm N] [--tpm N] [--latency-ms N] [--faults P]"
                );
                std::process::exit(2);
            }
        }
    }
    if port.is_some() {
        eprintln!("note: the fake binds a free port; see the URL below");
    }
    let server = FakeServer::start(config)?;
    println!(
        "fake OpenAI server at {} (stats: GET /stats); Ctrl-C to stop",
        server.base_url()
    );
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let s = server.stats();
        eprintln!(
            "requests {} ok {} 429 {} faults {}",
            s.requests, s.succeeded, s.rate_limited, s.faults
        );
    }
}
