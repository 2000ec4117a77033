//! How good the lexicon analyzer is, on data it was not written for.
//!
//! `cargo run --release --example lexicon_quality [DIR]`
//!
//! 1. **Sentiment outside support**: the four human-rated sentence sets of
//!    VADER's paper (Hutto & Gilbert, ICWSM 2014: tweets, movie reviews,
//!    Amazon reviews, NYT editorials; 23,699 sentences, each the mean of
//!    about 20 people's ratings on -4..4), shipped in the vaderSentiment
//!    source package on PyPI. DIR holds their `*_GroundTruth.txt`; without
//!    DIR they are fetched with `pip download vaderSentiment==3.3.2` into
//!    `target/vader-data`. Each sentence is scored as a one-message
//!    customer conversation by the lexicon analyzer, and by plain VADER
//!    (`vader-parity`, identical to Python vaderSentiment). Reported per set:
//!    polarity accuracy on the sentences people rated clearly positive or
//!    negative (|mean| ≥ 0.5; a prediction inside VADER's ±0.05 neutral band
//!    counts as wrong), three-class accuracy (people's neutral: |mean| < 0.5),
//!    and the correlation of the scores with the ratings.
//! 2. **Topics**: customer openings labelled by hand (English, Nepali in
//!    Devanagari, romanised Nepali): `tests/data/topics_labelled.tsv` (105,
//!    written before the keywords were tuned on it) and
//!    `tests/data/topics_heldout.tsv` (43, written after, never tuned on):
//!    accuracy of the keyword topic on each.
//!
//! Figures are printed for the closing notes; `analyze::topics` tests keep a
//! floor under the topic accuracy.

use std::path::{Path, PathBuf};
use std::process::Command;

use powerpulse::analyze::LexiconAnalyzer;
use powerpulse::analyze::topics::Topics;
use powerpulse::model::{Conversation, Message, Role};
use vader_parity::SentimentIntensityAnalyzer;

const SETS: [&str; 4] = [
    "tweets_GroundTruth.txt",
    "movieReviewSnippets_GroundTruth.txt",
    "amazonReviewSnippets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
];

fn customer(text: &str) -> Conversation {
    Conversation {
        id: "s".into(),
        messages: vec![Message {
            role: Role::Customer,
            text: text.to_string(),
            timestamp: None,
            time_ms: None,
            sender_name: None,
            autoresponse: false,
        }],
    }
}

/// The ground-truth files, fetched from PyPI once when no directory is given.
fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::args().nth(1) {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vader-data");
    if SETS.iter().all(|s| dir.join(s).exists()) {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let run = |cmd: &mut Command| {
        let ok = cmd.status().is_ok_and(|s| s.success());
        assert!(ok, "{cmd:?} failed");
    };
    run(Command::new("pip")
        .args([
            "download",
            "vaderSentiment==3.3.2",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
        ])
        .arg(&dir));
    run(Command::new("tar")
        .arg("xzf")
        .arg(dir.join("vaderSentiment-3.3.2.tar.gz"))
        .arg("-C")
        .arg(&dir));
    let resources = dir.join("vaderSentiment-3.3.2/additional_resources");
    run(Command::new("tar")
        .arg("xzf")
        .arg(resources.join("hutto_ICWSM_2014.tar.gz"))
        .arg("-C")
        .arg(&resources));
    for s in SETS {
        std::fs::copy(resources.join("hutto_ICWSM_2014").join(s), dir.join(s)).unwrap();
    }
    dir
}

#[derive(Default)]
struct Score {
    polar: u32,
    polar_right: u32,
    all: u32,
    three_right: u32,
    pairs: Vec<(f64, f64)>,
}

impl Score {
    fn add(&mut self, truth: f64, predicted: f64) {
        let label = |v: f64, band: f64| {
            if v >= band {
                1
            } else if v <= -band {
                -1
            } else {
                0
            }
        };
        let (t, p) = (label(truth, 0.5), label(predicted, 0.05));
        self.all += 1;
        self.three_right += u32::from(t == p);
        if t != 0 {
            self.polar += 1;
            self.polar_right += u32::from(t == p);
        }
        self.pairs.push((truth, predicted));
    }

    fn correlation(&self) -> f64 {
        let n = self.pairs.len() as f64;
        let (mx, my) = self
            .pairs
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in &self.pairs {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
            syy += (y - my) * (y - my);
        }
        sxy / (sxx * syy).sqrt()
    }

    fn line(&self) -> String {
        format!(
            "polarity {:5.1}% ({}/{})  three-class {:5.1}%  r {:.3}",
            100.0 * f64::from(self.polar_right) / f64::from(self.polar),
            self.polar_right,
            self.polar,
            100.0 * f64::from(self.three_right) / f64::from(self.all),
            self.correlation()
        )
    }
}

fn main() {
    let dir = data_dir();
    let lexicon = LexiconAnalyzer::new();
    let vader = SentimentIntensityAnalyzer::new();
    let (mut all_lexicon, mut all_vader) = (Score::default(), Score::default());
    let mut disagreements: Vec<(f64, f64, f64, String)> = Vec::new();
    println!("Sentiment on VADER's human-rated sentences (Hutto & Gilbert 2014):");
    for set in SETS {
        let text = std::fs::read_to_string(dir.join(set)).unwrap();
        let (mut l, mut v) = (Score::default(), Score::default());
        for line in text.lines() {
            let mut parts = line.trim_end_matches('\r').splitn(3, '\t');
            let (Some(_), Some(truth), Some(sentence)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(truth) = truth.trim().parse::<f64>() else {
                continue;
            };
            let ours = lexicon.analyze(&customer(sentence)).sentiment.score;
            let plain = vader.polarity_scores(sentence).compound;
            for (score, value) in [(&mut l, ours), (&mut all_lexicon, ours)] {
                score.add(truth, value);
            }
            for (score, value) in [(&mut v, plain), (&mut all_vader, plain)] {
                score.add(truth, value);
            }
            // Where the support rules cost: VADER right, the lexicon not.
            let sign = |v: f64, band: f64| (v >= band) as i8 - (v <= -band) as i8;
            let t = sign(truth, 0.5);
            if t != 0 && sign(plain, 0.05) == t && sign(ours, 0.05) != t {
                disagreements.push((truth, ours, plain, sentence.to_string()));
            }
        }
        println!("  {set:40}");
        println!("    lexicon {}", l.line());
        println!("    VADER   {}", v.line());
    }
    println!("  all sets");
    println!("    lexicon {}", all_lexicon.line());
    println!("    VADER   {}", all_vader.line());
    println!(
        "  VADER right and the lexicon wrong on {} sentences; the first 40:",
        disagreements.len()
    );
    for (truth, ours, plain, sentence) in disagreements.iter().take(40) {
        println!("    truth {truth:+.2} lexicon {ours:+.2} VADER {plain:+.2}  {sentence}");
    }

    let topics = Topics::default();
    for (set, what) in [
        (
            "topics_labelled.tsv",
            "the set the default keywords were tuned on",
        ),
        ("topics_heldout.tsv", "held out: never used to tune them"),
    ] {
        let labelled = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(set),
        )
        .unwrap();
        let (mut right, mut total) = (0, 0);
        let mut misses = Vec::new();
        for line in labelled
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let Some((label, text)) = line.split_once('\t') else {
                continue;
            };
            total += 1;
            let picked = topics.pick(&customer(text)).unwrap_or("(none)");
            if picked == label {
                right += 1;
            } else {
                misses.push(format!("{label} → {picked}: {text}"));
            }
        }
        println!(
            "\nTopics, {set} ({what}): {right}/{total} = {:.1}%",
            100.0 * f64::from(right) / f64::from(total)
        );
        for m in misses {
            println!("  {m}");
        }
    }
}
