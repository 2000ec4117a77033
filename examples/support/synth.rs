//! Realistic synthetic support chats for an electricity utility: outages,
//! bills, meter readings, new connections, payments; some in Nepali; bot
//! greetings and USSD autoreplies (`*977#`); happy, angry, sarcastic and
//! neutral endings. Deterministic for a seed. Used by the sample generator,
//! the benchmarks and tests (included with `#[path]`).
#![allow(dead_code)]

/// One exported message row, as a helpdesk tool would write it.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthMessage {
    pub conversation_id: String,
    /// The export's raw role: "customer", "agent" or "bot".
    pub role: &'static str,
    pub sender_name: String,
    pub text: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// splitmix64: tiny, fast, and the same on every platform.
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
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const BOT_GREETINGS: &[&str] = &[
    "Welcome to PowerGrid support! For balance and outage status dial *977# anytime. An agent will be with you shortly.",
    "Namaste! You can check your bill by dialling *977#. Thank you for contacting us, please wait for an agent.",
    "Thank you for contacting PowerGrid. Self-service: dial *977#. Your chat is important to us.",
];
const USSD_REPLIES: &[&str] = &[
    "You can also check this yourself: dial *977# and choose option 2.",
    "Tip: dial *977# to see your last three payments.",
];
const AGENTS: &[&str] = &["Sita", "Ram", "Anita", "Bikash", "Priya", "Suman"];
const CUSTOMERS: &[&str] = &[
    "Hari", "Gita", "Kamal", "Sunita", "Rajesh", "Maya", "Deepak", "Laxmi",
];

struct Topic {
    openers: &'static [&'static str],
    details: &'static [&'static str],
    agent: &'static [&'static str],
}

const TOPICS: &[Topic] = &[
    Topic {
        openers: &[
            "Hi, there is no power in Baneshwor since morning.",
            "Our whole street has no electricity for 5 hours now.",
            "Power cut again in Lalitpur ward 3, what is happening?",
            "There was a blackout last night and it is still off.",
        ],
        details: &[
            "My customer id is {id}.",
            "The transformer near the school made a loud noise.",
            "Neighbours also have no light.",
            "I work from home and need power urgently.",
        ],
        agent: &[
            "Sorry for the trouble. Let me check the outage map for your area.",
            "There is a fault on the feeder line; a crew has been dispatched.",
            "Can you confirm your customer id please?",
            "The estimated restoration time is within two hours.",
        ],
    },
    Topic {
        openers: &[
            "My bill this month is almost double the usual amount.",
            "I was charged twice for the same month.",
            "Why is there a late fee on my invoice? I paid on time.",
            "Can you explain the tariff on my latest bill?",
        ],
        details: &[
            "Account {id}, the March bill.",
            "Last month it was only 1,200 rupees.",
            "I have the receipt from the bank.",
        ],
        agent: &[
            "I can see the bill. Let me check the meter readings used.",
            "The extra amount comes from an estimated reading in February.",
            "I have raised a correction request with billing.",
            "The late fee was applied by mistake; I will reverse it.",
        ],
    },
    Topic {
        openers: &[
            "My meter display is blank.",
            "I think my meter reading is wrong, it shows more than I used.",
            "The meter reader did not come this month.",
            "How do I read my new smart meter?",
        ],
        details: &[
            "Meter number {id}.",
            "The photo of the reading is 04512.",
            "It started after the storm last week.",
        ],
        agent: &[
            "Thank you, I have logged a meter inspection for your address.",
            "Please send a photo of the meter display.",
            "A technician will visit within three working days.",
            "The display shows the total units on the first screen.",
        ],
    },
    Topic {
        openers: &[
            "I applied for a new connection two weeks ago, any update?",
            "How long does a new connection take?",
            "I want to transfer the connection to my name.",
        ],
        details: &[
            "Application number {id}.",
            "The house is in Bhaktapur.",
            "I submitted all the documents already.",
        ],
        agent: &[
            "Your application is approved and waiting for installation.",
            "The survey team will contact you this week.",
            "For the transfer we need the citizenship copy and the old bill.",
        ],
    },
    Topic {
        openers: &[
            "I paid through eSewa but the payment is not showing.",
            "My Khalti payment failed but money was deducted.",
            "How can I pay my bill online?",
        ],
        details: &[
            "Transaction id {id}.",
            "It was 2,450 rupees yesterday evening.",
        ],
        agent: &[
            "Payments can take up to 24 hours to reflect.",
            "I can see the transaction; it will be posted today.",
            "You can pay via eSewa, Khalti or at any branch.",
        ],
    },
];

const NEPALI_OPENERS: &[&str] = &[
    "नमस्ते, हाम्रो घरमा बिहानदेखि बत्ती छैन।",
    "मेरो बिल यो महिना धेरै आयो, किन?",
    "मिटर बिग्रिएको छ, कसैलाई पठाउनुहोस्।",
    "भुक्तानी गरें तर देखिएन।",
];
const NEPALI_HAPPY: &[&str] = &[
    "धन्यवाद, बत्ती आयो 🙏",
    "ठीक भयो, धेरै धन्यवाद!",
    "समाधान भयो, dhanyabad.",
];
const NEPALI_ANGRY: &[&str] = &["अझै बत्ती छैन, धेरै नराम्रो सेवा 😡", "समस्या अझै छ, उजुरी गर्छु।"];

const HAPPY: &[&str] = &[
    "Thank you so much, it works now!",
    "Power is back on. Thanks for the quick help!",
    "Great, that fixed it. Appreciate it.",
    "Perfect, the bill is corrected now. Thank you!",
    "Got it, payment shows now. Thanks a lot 👍",
];
const ANGRY: &[&str] = &[
    "This is the third time I'm calling about this. Useless service.",
    "Still no power. I want to talk to your supervisor.",
    "Not resolved. I will file a formal complaint with the regulator.",
    "Ridiculous, nobody has come and it is still not working 😡",
    "I'm fed up. Refund the extra charge or I cancel my account.",
];
const SARCASTIC: &[&str] = &[
    "Great, another hour on hold, thanks a lot.",
    "Wonderful, so I just wait again. Amazing service.",
    "Thanks for nothing.",
];
const NEUTRAL: &[&str] = &[
    "Okay, I will wait for the technician.",
    "Alright, I will check again tomorrow.",
    "Noted. What is the reference number?",
    "Okay.",
];
const AGENT_CLOSING: &[&str] = &[
    "Is there anything else I can help you with?",
    "Your reference number is {id}. Have a good day.",
    "I have updated the ticket with your details.",
];

/// `conversations` chats, rows of all of them interleaved by time, as an
/// export sorted by timestamp would have them. About 7.5 messages each.
pub fn generate(conversations: usize, seed: u64) -> Vec<SynthMessage> {
    let mut rng = Rng(seed ^ 0x5EED);
    // 2026-03-01T08:00:00Z
    let base: i64 = 1_772_352_000;
    let mut rows: Vec<(i64, SynthMessage)> = Vec::with_capacity(conversations * 8);
    for c in 0..conversations {
        let id = format!("CHAT-{:06}", c + 1);
        let reference = format!("{}", 100_000 + rng.below(900_000));
        let fill = |t: &str| t.replace("{id}", &reference);
        let customer = rng.pick(CUSTOMERS).to_string();
        let agent = rng.pick(AGENTS).to_string();
        let mut t = base + rng.below(30 * 24 * 3600) as i64;
        let mut msgs: Vec<(&'static str, String, String)> = Vec::new();
        let nepali = rng.chance(15);
        let topic = &TOPICS[rng.below(TOPICS.len())];

        if rng.chance(80) {
            msgs.push((
                "bot",
                "PowerGrid Bot".into(),
                rng.pick(BOT_GREETINGS).into(),
            ));
        }
        let opener = if nepali {
            rng.pick(NEPALI_OPENERS)
        } else {
            rng.pick(topic.openers)
        };
        msgs.push(("customer", customer.clone(), fill(opener)));
        msgs.push(("agent", agent.clone(), fill(rng.pick(topic.agent))));
        let middle = 1 + rng.below(2);
        for _ in 0..middle {
            msgs.push(("customer", customer.clone(), fill(rng.pick(topic.details))));
            msgs.push(("agent", agent.clone(), fill(rng.pick(topic.agent))));
        }
        if rng.chance(15) {
            msgs.push(("agent", agent.clone(), rng.pick(USSD_REPLIES).into()));
        }
        let ending = match rng.below(100) {
            0..=44 => {
                if nepali {
                    rng.pick(NEPALI_HAPPY)
                } else {
                    rng.pick(HAPPY)
                }
            }
            45..=69 => {
                if nepali {
                    rng.pick(NEPALI_ANGRY)
                } else {
                    rng.pick(ANGRY)
                }
            }
            70..=79 => rng.pick(SARCASTIC),
            _ => rng.pick(NEUTRAL),
        };
        msgs.push(("customer", customer.clone(), ending.into()));
        if rng.chance(50) {
            msgs.push(("agent", agent.clone(), fill(rng.pick(AGENT_CLOSING))));
        }
        for (role, name, text) in msgs {
            t += 20 + rng.below(300) as i64;
            let timestamp = chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            rows.push((
                t,
                SynthMessage {
                    conversation_id: id.clone(),
                    role,
                    sender_name: name,
                    text,
                    timestamp,
                },
            ));
        }
    }
    rows.sort_by_key(|(t, _)| *t);
    rows.into_iter().map(|(_, m)| m).collect()
}

/// Writes rows with the header `conversation_id,sender,sender_name,message,timestamp`.
pub fn write_csv(rows: &[SynthMessage], w: impl std::io::Write) -> csv::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record([
        "conversation_id",
        "sender",
        "sender_name",
        "message",
        "timestamp",
    ])?;
    for r in rows {
        out.write_record([
            r.conversation_id.as_str(),
            r.role,
            &r.sender_name,
            &r.text,
            &r.timestamp,
        ])?;
    }
    out.flush()?;
    Ok(())
}
