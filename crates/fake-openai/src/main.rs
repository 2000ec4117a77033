//! Runs the fake server by hand, e.g. to point `powerpulse` at it:
//! `cargo run -p fake-openai -- --port 8089 --rpm 3000 --tpm 600000 --latency-ms 400 --faults 0.05`

use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use fake_openai::{FakeConfig, FakeServer, Faults, Latency, ServerKind};

const USAGE: &str = "usage: fake-openai [--port N] [--rpm N] [--tpm N] [--latency-ms N] \
[--latency-sigma S] [--faults P] [--hang-ms N] [--seed N] [--workers N]
[--batch-request-ms N] [--batch-faults P] [--server openai|llama-cpp-python]

  --port N          port on 127.0.0.1 (default: a free one, printed)
  --rpm N, --tpm N  requests / tokens per minute (default: unlimited)
  --latency-ms N    median latency, log-normal (default: 0)
  --latency-sigma S shape of the latency distribution (default: 0.4)
  --faults P        probability of a fault, spread over all kinds (default: 0)
  --hang-ms N       how long a timeout fault hangs (default: 120000)
  --seed N, --workers N
  --batch-request-ms N  time per batch line, one after another (default: 0)
  --batch-faults P      probability of a failed batch line (default: 0)
  --server KIND         the server played: openai (default) or llama-cpp-python";

#[derive(Debug, thiserror::Error)]
enum ArgsError {
    #[error("{0} needs a value")]
    Missing(String),
    #[error("{flag}: {value:?} is not a valid value")]
    Invalid { flag: String, value: String },
    #[error("unknown option {0}")]
    Unknown(String),
}

struct Args {
    port: u16,
    config: FakeConfig,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, ArgsError> {
    fn value<T: FromStr>(flag: &str, value: Option<String>) -> Result<T, ArgsError> {
        let value = value.ok_or_else(|| ArgsError::Missing(flag.into()))?;
        value.parse().map_err(|_| ArgsError::Invalid {
            flag: flag.into(),
            value,
        })
    }
    let mut port = 0;
    let mut config = FakeConfig::default();
    let (mut median_ms, mut sigma) = (0.0_f64, 0.4);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let f = flag.as_str();
        match f {
            "--port" => port = value(f, args.next())?,
            "--rpm" => config.requests_per_minute = Some(value(f, args.next())?),
            "--tpm" => config.tokens_per_minute = Some(value(f, args.next())?),
            "--latency-ms" => median_ms = value(f, args.next())?,
            "--latency-sigma" => sigma = value(f, args.next())?,
            "--faults" => config.faults = Faults::uniform(value(f, args.next())?),
            "--hang-ms" => config.hang = Duration::from_millis(value(f, args.next())?),
            "--seed" => config.seed = value(f, args.next())?,
            "--workers" => config.workers = value(f, args.next())?,
            "--batch-request-ms" => {
                config.batch.per_request = Duration::from_millis(value(f, args.next())?)
            }
            "--batch-faults" => config.batch.line_error = value(f, args.next())?,
            "--server" => {
                config.server = match args.next().as_deref() {
                    Some("openai") => ServerKind::OpenAi,
                    Some("llama-cpp-python") => ServerKind::LlamaCppPython,
                    Some(other) => {
                        return Err(ArgsError::Invalid {
                            flag: f.into(),
                            value: other.into(),
                        });
                    }
                    None => return Err(ArgsError::Missing(f.into())),
                }
            }
            "-h" | "--help" => return Ok(None),
            _ => return Err(ArgsError::Unknown(flag)),
        }
    }
    if median_ms > 0.0 {
        let median =
            Duration::try_from_secs_f64(median_ms / 1000.0).map_err(|_| ArgsError::Invalid {
                flag: "--latency-ms".into(),
                value: median_ms.to_string(),
            })?;
        config.latency = Latency::LogNormal { median, sigma };
    }
    Ok(Some(Args { port, config }))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-openai: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let server = match FakeServer::start_on(addr, args.config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-openai: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "fake OpenAI server at {} (GET /stats for counters); Ctrl-C to stop",
        server.base_url()
    );
    // Runs until the process is interrupted; the server thread serves.
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let s = server.stats();
        let now = (s.requests, s.succeeded, s.rate_limited, s.faults);
        if last != Some(now) {
            eprintln!(
                "requests {} ok {} 429 {} faults {} in flight (peak) {}",
                s.requests, s.succeeded, s.rate_limited, s.faults, s.max_in_flight
            );
            last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Option<Args>, ArgsError> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn the_documented_command_line_parses() {
        let a = args("--port 8089 --rpm 3000 --tpm 600000 --latency-ms 400 --faults 0.05")
            .unwrap()
            .unwrap();
        assert_eq!(a.port, 8089);
        assert_eq!(a.config.requests_per_minute, Some(3000));
        assert_eq!(a.config.tokens_per_minute, Some(600_000));
        assert_eq!(
            a.config.latency,
            Latency::LogNormal {
                median: Duration::from_millis(400),
                sigma: 0.4
            }
        );
        assert_eq!(a.config.faults, Faults::uniform(0.05));
        let a = args("--batch-request-ms 20 --batch-faults 0.1 --server llama-cpp-python")
            .unwrap()
            .unwrap();
        assert_eq!(a.config.server, ServerKind::LlamaCppPython);
        assert!(args("--server vllm").is_err());
        assert_eq!(a.config.batch.per_request, Duration::from_millis(20));
        assert_eq!(a.config.batch.line_error, 0.1);
    }

    #[test]
    fn bad_command_lines_say_why() {
        assert!(matches!(args("--rpm"), Err(ArgsError::Missing(_))));
        assert!(matches!(args("--rpm lots"), Err(ArgsError::Invalid { .. })));
        assert!(matches!(args("--latency-ms -5"), Ok(Some(_))), "no latency");
        assert!(matches!(
            args("--latency-ms 1e300"),
            Err(ArgsError::Invalid { .. })
        ));
        assert!(matches!(args("--verbose"), Err(ArgsError::Unknown(_))));
        assert!(matches!(args("--help"), Ok(None)));
    }
}
