//! Realistic synthetic support chats for an electricity utility: outages,
//! bills, meter readings, new connections and payments; about 15% partly or
//! fully in Nepali (Devanagari); bot greetings and agent-sent USSD tips
//! (`*977#`) as autoresponses; happy, angry, sarcastic and neutral endings
//! that fit the topic. Deterministic for a seed. Rows of all conversations
//! come out interleaved by time, as a helpdesk export sorted by timestamp
//! has them. Used by the sample generator, the benchmarks and the tests
//! (included with `#[path]`, hence std + csv + chrono only).
#![allow(dead_code)]

/// One exported message row, as a helpdesk tool would write it.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthMessage {
    pub conversation_id: String,
    /// The export's raw role: "customer", "agent" or "bot".
    pub role: &'static str,
    pub sender_name: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

/// splitmix64: tiny, fast, and the same on every platform, so a seed names
/// the same file everywhere (a rand upgrade could not change it).
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
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// `k` distinct items in random order, so a customer never repeats a line.
    fn distinct<'a>(&mut self, items: &[&'a str], k: usize) -> Vec<&'a str> {
        let mut pool = items.to_vec();
        let mut out = Vec::with_capacity(k);
        while out.len() < k && !pool.is_empty() {
            out.push(pool.swap_remove(self.below(pool.len())));
        }
        out
    }
}

/// How the customer leaves the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    Happy,
    Angry,
    Sarcastic,
    Neutral,
}

/// One language's lines for one topic. `{id}` becomes a reference number.
struct Lines {
    openers: &'static [&'static str],
    /// What the customer adds after the agent's first reply.
    details: &'static [&'static str],
    /// The agent's first reply.
    ack: &'static [&'static str],
    /// The agent's replies to the details.
    progress: &'static [&'static str],
    /// The agent's last substantive reply when the issue is fixed.
    fixed: &'static [&'static str],
    /// The agent's last substantive reply when it is not.
    pending: &'static [&'static str],
    happy: &'static [&'static str],
    angry: &'static [&'static str],
    sarcastic: &'static [&'static str],
}

struct Topic {
    english: Lines,
    nepali: Lines,
}

const TOPICS: [Topic; 5] = [OUTAGE, BILLING, METER, CONNECTION, PAYMENT];

const OUTAGE: Topic = Topic {
    english: Lines {
        openers: &[
            "Hi, there is no power in Baneshwor since morning.",
            "Our whole street has had no electricity for 5 hours now.",
            "Power cut again in Lalitpur ward 3, what is happening?",
            "There was a blackout last night and it is still off.",
            "The lights keep going on and off in our building.",
        ],
        details: &[
            "My customer id is {id}.",
            "The transformer near the school made a loud noise.",
            "The neighbours have no light either.",
            "I work from home and need power urgently.",
            "It is only our side of the road, the other side has power.",
        ],
        ack: &[
            "Sorry for the trouble. Let me check the outage map for your area.",
            "Can you confirm your customer id please?",
            "I'm sorry to hear that. Which area are you in exactly?",
        ],
        progress: &[
            "There is a fault on the feeder line; a crew has been dispatched.",
            "I have logged outage ticket {id} for your street.",
            "The estimated restoration time is within two hours.",
            "Our team is replacing a blown fuse at the substation.",
        ],
        fixed: &[
            "The crew reports the line is repaired. Is the power back?",
            "Power has been restored in your area. Can you check please?",
        ],
        pending: &[
            "The crew is still working on the line, it may take a few more hours.",
            "I'm afraid there is no restoration time yet.",
        ],
        happy: &[
            "Power is back on. Thanks for the quick help!",
            "Yes, the lights are back. Thank you so much!",
            "It's restored now, thank you 🙏",
        ],
        angry: &[
            "Still no power. I want to talk to your supervisor.",
            "This is the third time this week. Useless service.",
            "Ridiculous, nobody has come and we are still without power 😡",
            "No power since yesterday and all you say is wait. I will file a formal complaint.",
        ],
        sarcastic: &[
            "Great, another outage, thanks a lot.",
            "Wonderful, so we just wait in the dark again. Amazing service.",
        ],
    },
    nepali: Lines {
        openers: &[
            "नमस्ते, हाम्रो घरमा बिहानदेखि बत्ती छैन।",
            "कोटेश्वर क्षेत्रमा हिजो रातिदेखि बिजुली छैन।",
        ],
        details: &[
            "मेरो ग्राहक नम्बर {id} हो।",
            "छिमेकीको घरमा पनि बत्ती छैन।",
            "ट्रान्सफर्मरबाट ठूलो आवाज आयो।",
        ],
        ack: &["असुविधाको लागि माफ गर्नुहोस्। तपाईंको क्षेत्र जाँच गर्दैछु।"],
        progress: &[
            "फिडर लाइनमा समस्या छ, टोली पठाइएको छ।",
            "दुई घण्टाभित्र बत्ती आउने अनुमान छ।",
        ],
        fixed: &["तपाईंको क्षेत्रमा बत्ती फर्किएको छ। एक पटक जाँच गर्नुहोस्।"],
        pending: &["मर्मत अझै जारी छ, केही घण्टा लाग्न सक्छ।"],
        happy: &["धन्यवाद, बत्ती आयो 🙏", "बत्ती आयो, धेरै धन्यवाद!"],
        angry: &["अझै बत्ती छैन, धेरै नराम्रो सेवा 😡", "बत्ती छैन, अब उजुरी गर्छु।"],
        sarcastic: &["वाह, फेरि बत्ती गयो। धन्यवाद है!"],
    },
};

const BILLING: Topic = Topic {
    english: Lines {
        openers: &[
            "My bill this month is almost double the usual amount.",
            "I was charged twice for the same month.",
            "Why is there a late fee on my invoice? I paid on time.",
            "The bill says 450 units, we never use that much.",
        ],
        details: &[
            "Account {id}, the March bill.",
            "Last month it was only 1,200 rupees.",
            "I have the receipt from the bank.",
            "We were away for two weeks, so usage should be lower.",
        ],
        ack: &[
            "I can see the bill. Let me check the meter readings used.",
            "Could you share your account number please?",
        ],
        progress: &[
            "The extra amount comes from an estimated reading in February.",
            "I see two charges for March; I am checking with billing.",
            "The tariff changed in January for usage above 100 units.",
        ],
        fixed: &[
            "I have corrected the bill; the new amount is on your account now.",
            "I have removed the extra charges; you will get a corrected bill by SMS.",
        ],
        pending: &[
            "I have raised a correction request; billing will reply in 7 days.",
            "I cannot change the bill from here, you need to visit the branch.",
        ],
        happy: &[
            "Perfect, the bill is corrected now. Thank you!",
            "That helped, I understand the bill now. Thanks!",
            "Great, the late fee is gone. Appreciate it.",
        ],
        angry: &[
            "Seven days? That is unacceptable. I want a refund now.",
            "Not resolved. I will file a formal complaint with the regulator.",
            "I'm fed up. Refund the extra charge or I cancel my account.",
        ],
        sarcastic: &[
            "Lovely, charged twice again and I get to visit the branch. Thanks a lot.",
            "Great, another wrong bill. Thanks for nothing.",
        ],
    },
    nepali: Lines {
        openers: &[
            "मेरो बिल यो महिना धेरै आयो, किन?",
            "एउटै महिनाको बिल दुई पटक आयो।",
        ],
        details: &[
            "ग्राहक नम्बर {id}, फागुन महिनाको बिल।",
            "गत महिना १,२०० रुपैयाँ मात्र थियो।",
        ],
        ack: &["म तपाईंको बिल हेर्दैछु।"],
        progress: &["अनुमानित रिडिङका कारण बिल बढेको हो।"],
        fixed: &["बिल सच्याइएको छ, नयाँ बिल SMS मा आउनेछ।"],
        pending: &["सच्याउने अनुरोध पठाइएको छ, ७ दिन लाग्न सक्छ।"],
        happy: &["बिल ठीक भयो, धेरै धन्यवाद!"],
        angry: &["समस्या अझै छ, उजुरी गर्छु।"],
        sarcastic: &["वाह, फेरि गलत बिल। धन्यवाद है!"],
    },
};

const METER: Topic = Topic {
    english: Lines {
        openers: &[
            "My meter display is blank.",
            "I think my meter reading is wrong, it shows more than I used.",
            "The meter reader did not come this month.",
        ],
        details: &[
            "Meter number {id}.",
            "The reading on the display is 04512.",
            "It started after the storm last week.",
        ],
        ack: &[
            "Please send a photo of the meter display.",
            "Could you give me the meter number please?",
        ],
        progress: &[
            "Thank you, I have logged meter inspection {id} for your address.",
            "Is the red light on the meter blinking?",
            "The reader's route was delayed; we used an estimate this month.",
        ],
        fixed: &[
            "The technician has replaced the meter and entered the correct reading.",
            "I have updated the reading to 04512 and recalculated the bill.",
        ],
        pending: &[
            "A technician will visit within ten working days.",
            "The inspection team is fully booked this week.",
        ],
        happy: &[
            "Got it, the reading is fixed. Thank you!",
            "The new meter works now, thanks for the help 👍",
            "That helped, the bill looks right now. Thanks!",
        ],
        angry: &[
            "Ten days? The meter is still not working and I pay for nothing.",
            "This is the second time the meter broke. I want to speak to a manager.",
        ],
        sarcastic: &["Great, so I keep paying for an estimate again. Thanks a lot."],
    },
    nepali: Lines {
        openers: &[
            "मिटर बिग्रिएको छ, कसैलाई पठाउनुहोस्।",
            "मिटरको रिडिङ गलत देखिन्छ।",
        ],
        details: &["मिटर नम्बर {id}।", "आँधीपछि मिटरको स्क्रिन बन्द छ।"],
        ack: &["कृपया मिटरको फोटो पठाउनुहोस्।"],
        progress: &["मिटर जाँचको अनुरोध दर्ता भयो।"],
        fixed: &["नयाँ मिटर जडान भइसकेको छ।"],
        pending: &["प्राविधिक दस दिनभित्र आउनुहुनेछ।"],
        happy: &["मिटर ठीक भयो, धन्यवाद 🙏"],
        angry: &["दस दिन? धेरै ढिलो भयो, समस्या अझै छ 😡"],
        sarcastic: &["वाह, दस दिन पर्खनु पर्ने। धन्यवाद है!"],
    },
};

const CONNECTION: Topic = Topic {
    english: Lines {
        openers: &[
            "I applied for a new connection two weeks ago, any update?",
            "We paid the connection fee last month and nobody has come.",
        ],
        details: &[
            "Application number {id}.",
            "The house is in Bhaktapur.",
            "I submitted all the documents already.",
        ],
        ack: &[
            "Let me look up your application.",
            "May I have the application number?",
        ],
        progress: &[
            "Your application is approved and waiting for installation.",
            "The survey team will contact you this week.",
            "We still need a copy of the citizenship certificate.",
        ],
        fixed: &[
            "Installation is booked for Sunday morning.",
            "Your connection is approved; the team will install it on Sunday.",
        ],
        pending: &[
            "There is a backlog of about a month for new connections.",
            "One document is missing, so the application is on hold.",
        ],
        happy: &[
            "Sunday works, thank you very much!",
            "Perfect, problem solved. Thanks!",
        ],
        angry: &[
            "A month? I have been waiting for weeks already. This is ridiculous.",
            "Nobody told me a document was missing. Worst service ever.",
        ],
        sarcastic: &["Great, another month of waiting. Thanks a lot."],
    },
    nepali: Lines {
        openers: &["नयाँ जडानको लागि दुई हप्ता अघि निवेदन दिएँ, के भयो?"],
        details: &["निवेदन नम्बर {id}।", "घर भक्तपुरमा छ।"],
        ack: &["तपाईंको निवेदन हेर्दैछु।"],
        progress: &["निवेदन स्वीकृत भएको छ।"],
        fixed: &["आइतबार बिहान जडान गरिनेछ।"],
        pending: &["नयाँ जडानको लागि एक महिना जति लाग्छ।"],
        happy: &["ठीक छ, धेरै धन्यवाद!"],
        angry: &["एक महिना? धेरै ढिलो सेवा, उजुरी गर्छु।"],
        sarcastic: &["वाह, अझै एक महिना। धन्यवाद है!"],
    },
};

const PAYMENT: Topic = Topic {
    english: Lines {
        openers: &[
            "I paid through eSewa but the payment is not showing.",
            "My Khalti payment failed but the money was deducted.",
            "I paid at the bank counter but the bill still shows as due.",
        ],
        details: &[
            "Transaction id {id}.",
            "It was 2,450 rupees yesterday evening.",
            "The bank SMS says the amount was debited.",
        ],
        ack: &[
            "Let me check the payment records.",
            "Could you share the transaction id please?",
        ],
        progress: &[
            "Payments can take up to 24 hours to reflect.",
            "Which wallet or bank did you use for the payment?",
            "I can see the transaction request from the wallet.",
        ],
        fixed: &[
            "I can see the transaction now; it is posted to your account.",
            "The failed payment was refunded to your wallet this morning.",
        ],
        pending: &[
            "The wallet has not confirmed it yet; please wait another 3 days.",
            "We have no record of that transaction, please contact your bank.",
        ],
        happy: &[
            "Got it, the payment shows now. Thanks a lot 👍",
            "Payment went through, thank you!",
        ],
        angry: &[
            "The money left my account and you have no record? Unacceptable.",
            "Three days? I will get a disconnection notice meanwhile. Useless.",
        ],
        sarcastic: &["Wonderful, my money is gone and I should call the bank. Thanks for nothing."],
    },
    nepali: Lines {
        openers: &[
            "भुक्तानी गरें तर देखिएन।",
            "खल्तीबाट पैसा काटियो तर बिल तिरिएको देखिएन।",
        ],
        details: &["कारोबार नम्बर {id}।", "हिजो बेलुका २,४५० रुपैयाँ तिरें।"],
        ack: &["म भुक्तानीको विवरण हेर्दैछु।"],
        progress: &["भुक्तानी देखिन २४ घण्टा लाग्न सक्छ।"],
        fixed: &["भुक्तानी तपाईंको खातामा देखिएको छ।"],
        pending: &["वालेटले अझै पुष्टि गरेको छैन।"],
        happy: &["भुक्तानी देखियो, धन्यवाद 👍", "ठीक भयो, dhanyabad!"],
        angry: &["पैसा काटियो तर अझै देखिएन, धेरै नराम्रो 😡"],
        sarcastic: &["वाह, पैसा काटियो तर भुक्तानी देखिएन। धन्यवाद है!"],
    },
};

const NEUTRAL_EN: &[&str] = &[
    "Okay, I will wait.",
    "Alright, I will check tomorrow.",
    "Noted. What is the reference number?",
    "Okay.",
];
const NEUTRAL_NE: &[&str] = &["ठीक छ, पर्खन्छु।", "हुन्छ।"];
/// What an impatient customer sends while the agent is busy.
const NUDGES: &[&str] = &["Any update?", "Hello? Are you still there?", "??"];

const BOT_GREETINGS: &[&str] = &[
    "Welcome to PowerGrid support! For balance and outage status dial *977# anytime. An agent will be with you shortly.",
    "Namaste! You can check your bill by dialling *977#. Thank you for contacting us, please wait for an agent.",
    "Thank you for contacting PowerGrid. Self-service: dial *977#. Your chat is important to us.",
    "नमस्ते! PowerGrid मा स्वागत छ। स्वसेवाको लागि *977# डायल गर्नुहोस्।",
];
/// Canned replies agents paste; the ingest filter treats them as autoresponses.
const USSD_REPLIES: &[&str] = &[
    "You can also check this yourself: dial *977# and choose option 2.",
    "Tip: dial *977# to see your last three payments.",
    "For outage updates by SMS dial *977# and choose 1. Thank you!",
];
const AGENT_CLOSING: &[&str] = &[
    "Is there anything else I can help you with?",
    "Your reference number is {id}. Have a good day.",
    "I have updated the ticket with your details.",
];
const AGENTS: &[&str] = &["Sita", "Ram", "Anita", "Bikash", "Priya", "Suman"];
const CUSTOMERS: &[&str] = &[
    "Hari", "Gita", "Kamal", "Sunita", "Rajesh", "Maya", "Deepak", "Laxmi", "Bishnu", "Sabina",
];

/// 2026-03-02T08:00:00Z: a Monday morning.
const START: i64 = 1_772_438_400;

/// `conversations` chats, rows of all of them interleaved by time, as an
/// export sorted by timestamp would have them. About 7.5 messages each;
/// a new chat starts every 2.5 minutes on average and lasts about 20, so
/// some eight are open at once.
pub fn generate(conversations: usize, seed: u64) -> Vec<SynthMessage> {
    let mut rng = Rng(seed ^ 0x5EED_CAFE);
    let mut rows: Vec<(i64, usize, SynthMessage)> = Vec::with_capacity(conversations * 8);
    let mut start = START;
    for c in 0..conversations {
        start += rng.below(300) as i64;
        let id = format!("CHAT-{:06}", c + 1);
        let mut t = start;
        for (role, sender_name, text) in conversation(&mut rng) {
            rows.push((
                t,
                rows.len(),
                SynthMessage {
                    conversation_id: id.clone(),
                    role,
                    sender_name,
                    text,
                    timestamp: rfc3339(t),
                },
            ));
            t += 15 + rng.below(240) as i64;
        }
    }
    // The stable key keeps each conversation's own order on equal seconds.
    rows.sort_by_key(|(t, seq, _)| (*t, *seq));
    rows.into_iter().map(|(_, _, m)| m).collect()
}

/// `weeks` weeks of chats from Monday 2 March 2026, a day at a time: about
/// `per_day` chats each weekday (±10 %), 60 % of that on Saturdays and 50 %
/// on Sundays, between 08:00 and 20:00 UTC; on each `(day, extra)` of
/// `incidents` (days counted from 0), `extra` more outage chats, every one
/// ending angry. Ids are `D<day>-<n>`. Rows come interleaved by time.
pub fn generate_weeks(
    weeks: usize,
    per_day: usize,
    seed: u64,
    incidents: &[(usize, usize)],
) -> Vec<SynthMessage> {
    let mut rng = Rng(seed ^ 0x5EED_DA75);
    let mut rows: Vec<(i64, usize, SynthMessage)> = Vec::new();
    for day in 0..weeks * 7 {
        let rhythm = match day % 7 {
            5 => 0.6,
            6 => 0.5,
            _ => 1.0,
        };
        let usual =
            (per_day as f64 * rhythm * (0.9 + 0.2 * rng.below(1001) as f64 / 1000.0)) as usize;
        let extra = incidents
            .iter()
            .filter(|(d, _)| *d == day)
            .map(|(_, n)| n)
            .sum::<usize>();
        for n in 0..usual + extra {
            let planted = n >= usual;
            let id = format!("D{day:02}-{n:04}");
            let mut t = START + day as i64 * 86_400 + rng.below(12 * 3600) as i64;
            let messages = if planted {
                conversation_of(&mut rng, Some(0), Some(Mood::Angry))
            } else {
                conversation(&mut rng)
            };
            for (role, sender_name, text) in messages {
                rows.push((
                    t,
                    rows.len(),
                    SynthMessage {
                        conversation_id: id.clone(),
                        role,
                        sender_name,
                        text,
                        timestamp: rfc3339(t),
                    },
                ));
                t += 15 + rng.below(240) as i64;
            }
        }
    }
    rows.sort_by_key(|(t, seq, _)| (*t, *seq));
    rows.into_iter().map(|(_, _, m)| m).collect()
}

/// One chat's messages in order: (raw role, sender name, text).
fn conversation(rng: &mut Rng) -> Vec<(&'static str, String, String)> {
    conversation_of(rng, None, None)
}

/// One chat of `topic` (an index of `TOPICS`) ending in `mood`, each
/// picked at random when not given.
fn conversation_of(
    rng: &mut Rng,
    topic: Option<usize>,
    mood: Option<Mood>,
) -> Vec<(&'static str, String, String)> {
    let topic = &TOPICS[topic.unwrap_or_else(|| rng.below(TOPICS.len()))];
    // 10% fully Nepali, 5% a Nepali customer with an English-writing agent.
    let language = rng.below(100);
    let customer_lines = if language < 15 {
        &topic.nepali
    } else {
        &topic.english
    };
    let agent_lines = if language < 10 {
        &topic.nepali
    } else {
        &topic.english
    };
    let mood = mood.unwrap_or_else(|| match rng.below(100) {
        0..=44 => Mood::Happy,
        45..=69 => Mood::Angry,
        70..=79 => Mood::Sarcastic,
        _ => Mood::Neutral,
    });
    let reference = (100_000 + rng.below(900_000)).to_string();
    let fill = |t: &str| t.replace("{id}", &reference);
    let customer = rng.pick(CUSTOMERS).to_string();
    let agent = rng.pick(AGENTS).to_string();
    let from_customer = |text: String| ("customer", customer.clone(), text);
    let from_agent = |text: String| ("agent", agent.clone(), text);

    let mut msgs = Vec::with_capacity(10);
    if rng.chance(80) {
        msgs.push((
            "bot",
            "PowerGrid Bot".to_string(),
            rng.pick(BOT_GREETINGS).to_string(),
        ));
    }
    msgs.push(from_customer(fill(rng.pick(customer_lines.openers))));
    if mood == Mood::Angry && rng.chance(20) {
        msgs.push(from_customer(rng.pick(NUDGES).to_string()));
    }
    msgs.push(from_agent(fill(rng.pick(agent_lines.ack))));
    // 0, 1 or 2 exchanges (mean 1) keep the average near 7.5 messages.
    let exchanges = match rng.below(4) {
        0 => 0,
        1 | 2 => 1,
        _ => 2,
    };
    let details = rng.distinct(customer_lines.details, exchanges);
    let progress = rng.distinct(agent_lines.progress, details.len());
    for (detail, reply) in details.into_iter().zip(progress) {
        msgs.push(from_customer(fill(detail)));
        msgs.push(from_agent(fill(reply)));
    }
    if rng.chance(15) {
        msgs.push(from_agent(rng.pick(USSD_REPLIES).to_string()));
    }
    let outcome = if mood == Mood::Happy {
        agent_lines.fixed
    } else {
        agent_lines.pending
    };
    msgs.push(from_agent(fill(rng.pick(outcome))));
    let ending = match mood {
        Mood::Happy => rng.pick(customer_lines.happy),
        Mood::Angry => rng.pick(customer_lines.angry),
        Mood::Sarcastic => rng.pick(customer_lines.sarcastic),
        Mood::Neutral if language < 15 => rng.pick(NEUTRAL_NE),
        Mood::Neutral => rng.pick(NEUTRAL_EN),
    };
    msgs.push(from_customer(ending.to_string()));
    if rng.chance(50) {
        msgs.push(from_agent(fill(rng.pick(AGENT_CLOSING))));
    }
    msgs
}

fn rfc3339(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
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
