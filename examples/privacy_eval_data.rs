//! Writes the labelled redaction set, `tests/data/privacy_eval.jsonl`: 300
//! support chats of a power utility in which customers and agents give
//! personal values of every kind the redactor knows (names, mobiles and
//! landlines in every form, e-mail, cards, IBANs, IP addresses, customer,
//! account, SC, meter and citizenship numbers, in English, romanised and
//! Devanagari Nepali), next to numbers the analysis needs that look like
//! them (amounts, dates, times, tickets, readings, volts, units, USSD codes,
//! places).
//!
//! `cargo run --example privacy_eval_data [-- --seed S --output PATH]`
//!
//! One JSON object per line: `{"id", "messages": [{"role", "sender_name",
//! "text"}]}`. In `text`, every labelled value is written `[[kind:value]]`:
//! a personal kind (`name`, `phone`, `email`, `card`, `iban`, `ip`, `id`),
//! or `keep` for a look-alike that must come out as it went in. The
//! evaluation (`privacy::tests::the_labelled_set`) and the planted-values
//! test (`tests/llm`) read the text with the brackets taken out.

use std::fmt::Write as _;

/// splitmix64, as `support/synth.rs`: a seed names the same file everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

const FIRST: &[&str] = &[
    "Sita", "Bikash", "Anita", "Ramesh", "Sunita", "Prakash", "Gita", "Suresh", "Kamala", "Dipesh",
    "Sarita", "Nabin", "Pooja", "Rajan", "Manisha", "Sagar", "Bimala", "Kiran", "Roshani", "Umesh",
    "Bill", "Asha",
];
const LAST: &[&str] = &[
    "Sharma", "Thapa", "Shrestha", "Gurung", "Tamang", "Adhikari", "Karki", "Maharjan", "Rai",
    "Bhandari", "Poudel", "Khadka", "Magar", "Joshi", "Basnet",
];
const DEV_NAMES: &[(&str, &str)] = &[
    ("सीता", "शर्मा"),
    ("बिकास", "थापा"),
    ("अनिता", "श्रेष्ठ"),
    ("रमेश", "गुरुङ"),
    ("गीता", "अधिकारी"),
];
const AGENTS: &[&str] = &[
    "Ramila Khatri",
    "Hari Prasad Ghimire",
    "Susmita Lama",
    "Dinesh Bista",
    "Agent Pramila",
];
const PLACES: &[&str] = &[
    "Baneshwor",
    "Koteshwor",
    "Lalitpur",
    "Bhaktapur",
    "Pokhara",
    "Butwal",
    "Kalanki",
    "Chabahil",
];

fn luhn_complete(body: &str) -> String {
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|c| {
            let mut sum = 0;
            for (i, b) in c.bytes().rev().enumerate() {
                let mut d = u32::from(b - b'0');
                if i % 2 == 1 {
                    d *= 2;
                    if d > 9 {
                        d -= 9;
                    }
                }
                sum += d;
            }
            sum % 10 == 0
        })
        .expect("one digit completes it")
}

fn iban(rng: &mut Rng) -> String {
    // A German IBAN: DE, check digits, 18 digits of bank code and account.
    let bban = rng.digits(18);
    let numeric = format!("{bban}131400"); // D=13 E=14, then "00"
    let rem = numeric
        .bytes()
        .fold(0u64, |r, b| (r * 10 + u64::from(b - b'0')) % 97);
    let check = 98 - rem;
    let compact = format!("DE{check:02}{bban}");
    if rng.chance(0.5) {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        compact
    }
}

fn to_devanagari(digits: &str) -> String {
    digits
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_u32('०' as u32 + d).unwrap(),
            None => c,
        })
        .collect()
}

fn mobile(rng: &mut Rng) -> String {
    let prefix = rng.pick(&[
        "984", "985", "986", "980", "981", "982", "974", "975", "976", "961",
    ]);
    let national = format!("{prefix}{}", rng.digits(7));
    let (a, b, c) = (&national[..3], &national[3..6], &national[6..]);
    match rng.below(16) {
        0 | 1 => national,
        2 => format!("+977 {national}"),
        3 => format!("+977-{national}"),
        4 => format!("{a}-{b}-{c}"),
        5 => format!("{} {}", &national[..5], &national[5..]),
        6 => format!("(+977) {a} {b} {c}"),
        7 => to_devanagari(&national),
        8 => format!("00977{national}"),
        9 => format!("{a}.{b}.{c}"),
        10 => format!(
            "{}-{}-{}-{}-{}",
            &national[..2],
            &national[2..4],
            &national[4..6],
            &national[6..8],
            &national[8..]
        ),
        11 => format!(
            "+977 {} {} {}",
            &national[..2],
            &national[2..6],
            &national[6..]
        ),
        12 => to_devanagari(&format!("{a}-{b}-{c}")),
        13 => format!("977{national}"),
        14 => format!("+977{national}"),
        _ => format!("{a} {b} {c}"),
    }
}

fn landline(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 => format!("01-4{}", rng.digits(6)),
        1 => format!("01-5{}", rng.digits(6)),
        2 => format!("061-5{}", rng.digits(5)),
        3 => format!("(01) 4{}", rng.digits(6)),
        4 => format!("01 4{} {}", rng.digits(2), rng.digits(4)),
        5 => format!("+977-1-4{}", rng.digits(6)),
        _ => format!("014{}", rng.digits(6)),
    }
}

fn phone(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=6 => mobile(rng),
        7 | 8 => landline(rng),
        _ => rng
            .pick(&[
                "+1 415 555 2671",
                "+44 20 7946 0958",
                "+91 98765 43210",
                "+61 2 9374 4000",
            ])
            .to_string(),
    }
}

fn email(rng: &mut Rng, first: &str, last: &str) -> String {
    let user = match rng.below(3) {
        0 => format!("{}.{}", first.to_lowercase(), last.to_lowercase()),
        1 => format!("{}{}", first.to_lowercase(), rng.digits(2)),
        2 => format!("{}+nea@", first.to_lowercase())
            .trim_end_matches('@')
            .to_string(),
        _ => format!("{}_{}", last.to_lowercase(), rng.digits(3)),
    };
    if rng.chance(0.15) {
        // Written as people do: capitals, or in brackets.
        let mut upper = user.clone();
        if let Some(f) = upper.get_mut(..1) {
            f.make_ascii_uppercase();
        }
        return format!("{upper}@{}", rng.pick(&["Gmail.com", "Yahoo.com"]));
    }
    let domain = rng.pick(&[
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "wlink.com.np",
        "ntc.net.np",
    ]);
    format!("{user}@{domain}")
}

fn card(rng: &mut Rng) -> String {
    if rng.chance(0.15) {
        // American Express: 15 digits, grouped 4-6-5.
        let n = luhn_complete(&format!("37{}", rng.digits(12)));
        return format!("{} {} {}", &n[..4], &n[4..10], &n[10..]);
    }
    let prefix = rng.pick(&["4", "5", "4"]);
    let number = luhn_complete(&format!("{prefix}{}", rng.digits(14)));
    match rng.below(3) {
        0 => number,
        1 => number
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" "),
        _ => number
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-"),
    }
}

fn ip(rng: &mut Rng) -> String {
    if rng.chance(0.7) {
        format!(
            "{}.{}.{}.{}",
            rng.pick(&["192", "10", "202", "110", "27"]),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        )
    } else {
        format!(
            "2400:1a00:{:x}:{:x}::{:x}",
            rng.below(65536),
            rng.below(65536),
            1 + rng.below(65535)
        )
    }
}

/// An identifier with the words that say what it is: `(text before, value, text after)`.
fn identifier(rng: &mut Rng) -> (String, String, String) {
    match rng.below(18) {
        10 => (
            "SC ".into(),
            format!("{}-{}-{}", rng.digits(3), rng.digits(2), rng.digits(3)),
            "".into(),
        ),
        11 => ("Customer ID:".into(), rng.digits(7), "".into()),
        12 => ("A/C ".into(), format!("0{}", rng.digits(12)), "".into()),
        13 => ("consumer no.".into(), rng.digits(8), "".into()),
        14 => (
            "नागरिकता नं ".into(),
            to_devanagari(&format!(
                "{}-{}-{}-{}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(5)
            )),
            "".into(),
        ),
        15 => (
            "khata number ".into(),
            format!("0{}", rng.digits(9)),
            "".into(),
        ),
        16 => (
            "meter ID: ".into(),
            format!("NEA-{}", rng.digits(8)),
            "".into(),
        ),
        17 => (
            "my SC no is ".into(),
            format!("{} {} {}", rng.digits(3), rng.digits(2), rng.digits(3)),
            "".into(),
        ),
        0 => (
            "my SC no. is ".into(),
            format!("{}.{}.{}", rng.digits(3), rng.digits(2), rng.digits(3)),
            "".into(),
        ),
        1 => (
            "SC number ".into(),
            format!(
                "{}.{}.{}{}",
                rng.digits(3),
                rng.digits(2),
                rng.digits(2),
                rng.digits(1)
            ),
            " ho".into(),
        ),
        2 => ("customer id: ".into(), rng.digits(7), "".into()),
        3 => ("consumer number ".into(), rng.digits(8), "".into()),
        4 => (
            "account no ".into(),
            format!("0{}", rng.digits(11)),
            "".into(),
        ),
        5 => (
            "citizenship number ".into(),
            format!(
                "{}-{}-{}-{}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(5)
            ),
            "".into(),
        ),
        6 => ("ग्राहक नं ".into(), to_devanagari(&rng.digits(6)), "".into()),
        7 => ("mero grahak number ".into(), rng.digits(7), " ho".into()),
        8 => (
            "".into(),
            format!("{}.{}.{}", rng.digits(3), rng.digits(2), rng.digits(3)),
            " is my SC number".into(),
        ),
        _ => ("meter no ".into(), rng.digits(9), "".into()),
    }
}

/// A look-alike the analysis needs: kept.
fn keep(rng: &mut Rng) -> (String, String, String) {
    let thousands = |rng: &mut Rng| format!("{},{}", 1 + rng.below(99), rng.digits(3));
    match rng.below(32) {
        20 => (
            "app version ".into(),
            format!("{}.{}.{}", rng.below(5), rng.below(20), rng.below(30)),
            "".into(),
        ),
        21 => (
            "a fine of ".into(),
            format!("1,{},000", 10 + rng.below(89)),
            " was added".into(),
        ),
        22 => ("paid ".into(), format!("Rs.{}", rng.digits(4)), "".into()),
        23 => (
            "".into(),
            format!("NRs {}", rng.digits(4)),
            " charged".into(),
        ),
        24 => (
            "transformer ".into(),
            format!("T-{}", rng.digits(4)),
            " is down".into(),
        ),
        25 => (
            "near pole ".into(),
            format!("{}-{}", rng.digits(4), rng.digits(2)),
            "".into(),
        ),
        26 => (
            "in ".into(),
            format!("ward no. {}", 1 + rng.below(32)),
            "".into(),
        ),
        27 => (
            "".into(),
            format!("{}.{} kWh", rng.digits(5), rng.below(10)),
            " this month".into(),
        ),
        28 => (
            "since ".into(),
            format!("{}/{}/2026", 1 + rng.below(28), 1 + rng.below(12)),
            "".into(),
        ),
        29 => (
            "since ".into(),
            format!("{} baje", 1 + rng.below(12)),
            "".into(),
        ),
        30 => (
            "".into(),
            format!(
                "txn id {}{}{}",
                rng.digits(2),
                rng.pick(&["AB", "XK", "QZ"]),
                rng.digits(6)
            ),
            " failed".into(),
        ),
        31 => (
            "a ".into(),
            format!("{} phase", rng.pick(&["single", "three"])),
            " line".into(),
        ),
        0 => (
            "I paid ".into(),
            format!("Rs. {}", thousands(rng)),
            " already".into(),
        ),
        1 => (
            "the bill says ".into(),
            format!("Rs {}", thousands(rng)),
            "".into(),
        ),
        2 => (
            "".into(),
            format!("{} rupees", thousands(rng)),
            " deducted twice".into(),
        ),
        3 => (
            "paid ".into(),
            format!("NPR {}.50", rng.digits(3)),
            " via eSewa".into(),
        ),
        4 => (
            "on ".into(),
            format!("2082/{:02}/{:02}", 1 + rng.below(12), 1 + rng.below(30)),
            "".into(),
        ),
        5 => (
            "since ".into(),
            format!("2026-03-{:02}", 1 + rng.below(28)),
            "".into(),
        ),
        6 => (
            "at ".into(),
            format!("{}:{:02}", 6 + rng.below(16), rng.below(60)),
            " today".into(),
        ),
        7 => (
            "around ".into(),
            format!("{} pm", 1 + rng.below(11)),
            "".into(),
        ),
        8 => (
            "your ticket is ".into(),
            format!("ticket {}", rng.digits(6)),
            "".into(),
        ),
        9 => (
            "".into(),
            format!("TKT-2026-{}", rng.digits(5)),
            " is open".into(),
        ),
        10 => (
            "complaint registered as ".into(),
            format!("complaint no. {}", rng.digits(8)),
            "".into(),
        ),
        11 => (
            "".into(),
            format!("meter reading {}", rng.digits(5)),
            " this month".into(),
        ),
        12 => (
            "voltage is only ".into(),
            format!("{}V", 150 + rng.below(60)),
            "".into(),
        ),
        13 => (
            "we used ".into(),
            format!("{} units", 100 + rng.below(900)),
            "".into(),
        ),
        14 => ("dial ".into(), "*977#".into(), " for balance".into()),
        15 => (
            "the ".into(),
            format!("{} kVA", rng.pick(&["100", "200", "250"])),
            " transformer".into(),
        ),
        16 => ("in ".into(), rng.pick(PLACES).into(), " area".into()),
        17 => ("call the helpline ".into(), "1150".into(), "".into()),
        18 => (
            "".into(),
            format!("{} hours", 2 + rng.below(20)),
            " without power".into(),
        ),
        _ => (
            "bill of ".into(),
            format!("रु. {}", to_devanagari(&rng.digits(4))),
            " आयो".into(),
        ),
    }
}

fn mark(kind: &str, value: &str) -> String {
    format!("[[{kind}:{value}]]")
}

struct Chat {
    customer: String,
    customer_parts: Vec<String>,
    agent: String,
    agent_first: String,
    lines: Vec<(&'static str, String)>,
}

fn chat(rng: &mut Rng) -> Chat {
    let devanagari = rng.chance(0.15);
    let (first, last) = if devanagari {
        let (f, l) = DEV_NAMES[rng.below(DEV_NAMES.len())];
        (f.to_string(), l.to_string())
    } else {
        (rng.pick(FIRST).to_string(), rng.pick(LAST).to_string())
    };
    let agent = rng.pick(AGENTS).to_string();
    let agent_first = agent
        .split(' ')
        .find(|w| *w != "Agent")
        .unwrap_or("Ramila")
        .to_string();
    Chat {
        customer: format!("{first} {last}"),
        customer_parts: vec![first, last],
        agent,
        agent_first,
        lines: Vec::new(),
    }
}

fn generate(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::new();
    let openings = [
        "no power since morning in our lane",
        "my bill is too high this month",
        "the meter is showing wrong reading",
        "I paid online but it is not updated",
        "bijuli chaina hajur, kaile aauchha?",
        "बत्ती गएको ३ घण्टा भयो",
        "voltage is fluctuating and the fridge stopped",
        "I want a new connection for my shop",
    ];
    for i in 0..n {
        let mut c = chat(&mut rng);
        let (first, last) = (c.customer_parts[0].clone(), c.customer_parts[1].clone());
        // Opening, often with a look-alike.
        let mut opening = rng.pick(&openings).to_string();
        if rng.chance(0.6) {
            let (a, v, b) = keep(&mut rng);
            let _ = write!(opening, ", {a}{}{b}", mark("keep", &v));
        }
        c.lines.push(("customer", opening));
        // The agent greets, sometimes by name.
        let greeting = if rng.chance(0.5) {
            format!(
                "Namaste, this is {} from the support desk. Could you share your details?",
                mark("name", &c.agent_first)
            )
        } else {
            "Sorry for the trouble. Could you share your details please?".to_string()
        };
        c.lines.push(("agent", greeting));
        // The customer gives two to four personal values.
        let gives = 2 + rng.below(3);
        for g in 0..gives {
            let line = match rng.below(9) {
                0 => match rng.below(4) {
                    0 => format!(
                        "my name is {} {}",
                        mark("name", &first),
                        mark("name", &last)
                    ),
                    1 => format!("this is {}'s account", mark("name", &first)),
                    2 => format!("{} ji here", mark("name", &last.to_lowercase())),
                    _ => format!("I am {}", mark("name", &first.to_lowercase())),
                },
                1 | 2 => format!(
                    "{} {}",
                    rng.pick(&[
                        "you can call me on",
                        "my number is",
                        "phone:",
                        "contact",
                        "mero number",
                        "ph",
                        "फोन नम्बर",
                        "reach me at",
                    ]),
                    mark("phone", &phone(&mut rng))
                ),
                3 => format!(
                    "{} {}",
                    rng.pick(&["email me at", "my email is", "mail:"]),
                    mark(
                        "email",
                        &email(&mut rng, &first.to_lowercase(), &last.to_lowercase())
                    )
                ),
                4 => {
                    let (a, v, b) = identifier(&mut rng);
                    format!("{a}{}{b}", mark("id", &v))
                }
                5 => format!(
                    "I paid with card {} and it failed",
                    mark("card", &card(&mut rng))
                ),
                6 if rng.chance(0.3) => {
                    format!("refund to IBAN {} please", mark("iban", &iban(&mut rng)))
                }
                6 | 7 if rng.chance(0.1) => format!(
                    "the portal is at {}:8080 on my router",
                    mark(
                        "ip",
                        &format!("192.168.{}.{}", rng.below(256), 1 + rng.below(254))
                    )
                ),
                6 | 7 => format!(
                    "{} {}",
                    rng.pick(&[
                        "the smart meter portal shows my IP as",
                        "router ip",
                        "login from"
                    ]),
                    mark("ip", &ip(&mut rng))
                ),
                _ => {
                    let (a, v, b) = identifier(&mut rng);
                    format!("{a}{}{b}, {}", mark("id", &v), mark("name", &first))
                }
            };
            let line = if g == 0 && rng.chance(0.3) {
                format!("{} here, {line}", mark("name", &first))
            } else {
                line
            };
            c.lines.push(("customer", line));
        }
        // The agent answers with numbers to keep, sometimes repeating a value.
        let (a, v, b) = keep(&mut rng);
        let reply = if rng.chance(0.4) {
            format!(
                "Thank you {}, I found it. {a}{}{b}",
                mark("name", &first),
                mark("keep", &v)
            )
        } else {
            format!("Thank you, I found it. {a}{}{b}", mark("keep", &v))
        };
        c.lines.push(("agent", reply));
        if rng.chance(0.5) {
            let (a, v, b) = keep(&mut rng);
            c.lines.push((
                "customer",
                format!("ok, {a}{}{b}. please hurry", mark("keep", &v)),
            ));
        }
        if first == "Bill" {
            c.lines.push((
                "customer",
                "and my bill for this month is still wrong".to_string(),
            ));
        }
        c.lines.push((
            "agent",
            format!(
                "A team is on the way, {}. Regards, {}",
                mark("name", &first),
                mark("name", &c.agent_first)
            ),
        ));
        c.lines.push(("customer", "ok thank you".to_string()));

        let messages: Vec<serde_json::Value> = c
            .lines
            .iter()
            .map(|(role, text)| {
                serde_json::json!({
                    "role": role,
                    "sender_name": if *role == "customer" { &c.customer } else { &c.agent },
                    "text": text,
                })
            })
            .collect();
        let line = serde_json::json!({"id": format!("P-{:04}", i + 1), "messages": messages});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn main() {
    let mut seed = 23u64;
    let mut output = String::from("tests/data/privacy_eval.jsonl");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--seed", Some(v)) => seed = v.parse().expect("a number"),
            ("--output", Some(v)) => output = v,
            _ => {
                eprintln!("usage: privacy_eval_data [--seed S] [--output PATH]");
                std::process::exit(2);
            }
        }
    }
    let text = generate(300, seed);
    std::fs::write(&output, &text).expect("writable output");
    let planted = text.matches("[[").count() - text.matches("[[keep:").count();
    eprintln!(
        "wrote 300 chats to {output}: {planted} personal values, {} look-alikes",
        text.matches("[[keep:").count()
    );
}
