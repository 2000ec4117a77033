//! Who is who in an export that names its senders but not their roles
//! (WhatsApp, Messenger, Telegram, a table without a role column).
//!
//! A first pass over the upload fills a [`Roster`]: every conversation's
//! senders, in order of their first message, and what the format says
//! (a chat titled with the customer's name, the account that exported the
//! chats). [`Roster::cast`] then decides, in this order:
//!
//! 1. a sender `ingest.agents` names (a name or a `*` pattern), or one the
//!    export says speaks for the business (the account that made the
//!    export, a helpdesk user who is an agent), is the business side;
//! 2. in a chat titled with one of its senders, that sender is the customer
//!    and everyone else speaks for the business;
//! 3. across the upload, a sender who meets more people than the people
//!    they meet (in some conversation, present in more conversations than
//!    another sender there) is the business side: a page, a business
//!    number or a support agent answers many customers, a customer writes
//!    in a few chats;
//! 4. in each conversation, the senders not found to be agents are its
//!    customers. A conversation where nothing tells its senders apart (two
//!    people, one chat each, no title) is a guess: its first sender is
//!    taken as the customer and the others as agents, and its messages are
//!    counted as guessed ([`Casting::guessed`]).

use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder};

use crate::model::Role;

/// Longest sender name kept as a key, in bytes: a name is a cell of the
/// file and may be a megabyte long.
const MAX_NAME_BYTES: usize = 256;

fn key(name: &str) -> &str {
    let name = name.trim();
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// `ingest.agents`: the business side's sender names, or patterns where `*`
/// stands for any run of characters and `?` for one; compared whole and
/// case-insensitively, surrounding spaces ignored.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    set: Option<RegexSet>,
}

/// An `ingest.agents` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AgentsError(String);

impl AgentsError {
    pub(crate) fn too_long(chars: usize, max: usize) -> Self {
        Self(format!(
            "{chars} characters, more than the {max} a list of senders may have"
        ))
    }
}

impl Agents {
    pub fn new(patterns: &[String]) -> Result<Self, AgentsError> {
        let globs: Vec<String> = patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(glob_to_regex)
            .collect();
        if globs.is_empty() {
            return Ok(Self::default());
        }
        let set = RegexSetBuilder::new(&globs)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| AgentsError(format!("{} patterns do not compile: {e}", globs.len())))?;
        Ok(Self { set: Some(set) })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    pub fn matches(&self, name: &str) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(name.trim()))
    }
}

fn glob_to_regex(glob: &str) -> String {
    let mut re = String::with_capacity(glob.len() + 8);
    re.push_str("^(?s:");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push_str(")$");
    re
}

/// What an export says about one conversation's people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// The chat is titled with this name (a one-to-one chat: the other
    /// party, the customer, when the business exported it).
    Title(String),
    /// This sender is a participant, whether or not they wrote.
    Participant(String),
}

#[derive(Debug, Default)]
struct Person {
    /// Conversations this name wrote in (or was listed in).
    conversations: u32,
    /// Known to speak for the business (see [`Roster::business`]).
    business: bool,
}

#[derive(Debug, Default)]
struct Seen {
    /// Name ids in order of their first message (listed participants after).
    people: Vec<u32>,
    title: Option<u32>,
}

impl Seen {
    fn add(&mut self, id: u32) -> bool {
        if self.people.contains(&id) {
            return false;
        }
        self.people.push(id);
        true
    }
}

/// The people of every conversation, gathered by a first pass.
#[derive(Debug, Default)]
pub struct Roster {
    ids: HashMap<Box<str>, u32>,
    people: Vec<Person>,
    conversations: HashMap<Box<str>, Seen>,
}

impl Roster {
    fn id(&mut self, name: &str) -> u32 {
        let name = key(name);
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.people.len() as u32;
        self.ids.insert(name.into(), id);
        self.people.push(Person::default());
        id
    }

    fn conversation(&mut self, conversation: &str) -> &mut Seen {
        if !self.conversations.contains_key(conversation) {
            self.conversations
                .insert(conversation.into(), Seen::default());
        }
        self.conversations
            .get_mut(conversation)
            .expect("inserted above")
    }

    /// `name` wrote a message in `conversation`.
    pub fn wrote(&mut self, conversation: &str, name: &str) {
        let id = self.id(name);
        if self.conversation(conversation).add(id) {
            self.people[id as usize].conversations += 1;
        }
    }

    /// What the export says about `conversation`.
    pub fn hint(&mut self, conversation: &str, hint: Hint) {
        match hint {
            Hint::Title(name) => {
                let id = self.id(&name);
                self.conversation(conversation).title = Some(id);
            }
            Hint::Participant(name) => self.wrote(conversation, &name),
        }
    }

    /// A sender the export says speaks for the business (the account that
    /// made the export, a helpdesk user who is an agent), wherever it writes.
    pub fn business(&mut self, name: &str) {
        let id = self.id(name);
        self.people[id as usize].business = true;
    }

    /// Decides everyone's role (see the module's documentation). With
    /// `exact`, `agents` is the whole business side, as an operator listed
    /// it: everyone else is a customer, and nothing is a guess.
    pub fn cast(self, agents: &Agents, exact: bool) -> Cast {
        let Roster {
            ids,
            people,
            conversations,
        } = self;
        let names: Vec<&str> = {
            let mut names = vec![""; people.len()];
            for (name, id) in &ids {
                names[*id as usize] = name;
            }
            names
        };
        let mut agent: Vec<bool> = people
            .iter()
            .zip(&names)
            .map(|(p, name)| (p.business && !exact) || agents.matches(name))
            .collect();
        if exact {
            let cast = conversations
                .into_iter()
                .map(|(conversation, seen)| {
                    let customers = seen
                        .people
                        .iter()
                        .copied()
                        .filter(|id| !agent[*id as usize])
                        .collect();
                    let decided = Decided {
                        people: seen.people,
                        customers,
                        guessed: false,
                    };
                    (conversation, decided)
                })
                .collect();
            return Cast { ids, cast };
        }
        // A chat titled with one of its senders: the others are the business.
        for seen in conversations.values() {
            if let Some(title) = seen.title.filter(|t| seen.people.contains(t)) {
                for id in seen.people.iter().filter(|id| **id != title) {
                    agent[*id as usize] = true;
                }
            }
        }
        // Someone who meets more people than the people they meet.
        for seen in conversations.values() {
            let fewest = seen
                .people
                .iter()
                .map(|id| people[*id as usize].conversations)
                .min()
                .unwrap_or(0);
            for id in &seen.people {
                if people[*id as usize].conversations > fewest {
                    agent[*id as usize] = true;
                }
            }
        }
        let cast = conversations
            .into_iter()
            .map(|(conversation, seen)| {
                let titled = seen.title.filter(|t| seen.people.contains(t));
                let is_agent = |id: u32| titled != Some(id) && agent[id as usize];
                let told = seen.people.len() < 2
                    || seen.people.iter().any(|id| is_agent(*id))
                    || titled.is_some();
                let customers = if told {
                    seen.people
                        .iter()
                        .copied()
                        .filter(|id| !is_agent(*id))
                        .collect()
                } else {
                    // Nothing tells them apart: the first to write is the customer.
                    seen.people.first().copied().into_iter().collect()
                };
                (
                    conversation,
                    Decided {
                        people: seen.people,
                        customers,
                        guessed: !told,
                    },
                )
            })
            .collect();
        Cast { ids, cast }
    }
}

#[derive(Debug)]
struct Decided {
    people: Vec<u32>,
    customers: Vec<u32>,
    guessed: bool,
}

/// A sender's role, and whether it was a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Casting {
    pub role: Role,
    pub guessed: bool,
}

/// Everyone's role, per conversation (from [`Roster::cast`]).
#[derive(Debug)]
pub struct Cast {
    ids: HashMap<Box<str>, u32>,
    cast: HashMap<Box<str>, Decided>,
}

impl Cast {
    /// The role of `name` in `conversation`; a sender the first pass did
    /// not see (the file changed in between) is a guessed customer.
    pub fn role(&self, conversation: &str, name: &str) -> Casting {
        let (Some(id), Some(decided)) = (self.ids.get(key(name)), self.cast.get(conversation))
        else {
            return Casting {
                role: Role::Customer,
                guessed: true,
            };
        };
        Casting {
            role: if decided.customers.contains(id) {
                Role::Customer
            } else {
                Role::Agent
            },
            guessed: decided.guessed,
        }
    }

    /// The senders found to be agents, with the number of conversations
    /// they speak for the business in, most first; at most `limit`.
    pub fn agents(&self, limit: usize) -> Vec<(String, u32)> {
        let mut names = vec![""; self.ids.len()];
        for (name, id) in &self.ids {
            names[*id as usize] = name;
        }
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for decided in self.cast.values() {
            for id in &decided.people {
                if !decided.customers.contains(id) {
                    *counts.entry(*id).or_default() += 1;
                }
            }
        }
        let mut agents: Vec<(String, u32)> = counts
            .into_iter()
            .map(|(id, n)| (names[id as usize].to_string(), n))
            .collect();
        agents.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        agents.truncate(limit);
        agents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(chats: &[(&str, &[&str])]) -> Roster {
        let mut r = Roster::default();
        for (chat, senders) in chats {
            for s in *senders {
                r.wrote(chat, s);
            }
        }
        r
    }

    fn role(cast: &Cast, chat: &str, name: &str) -> (Role, bool) {
        let c = cast.role(chat, name);
        (c.role, c.guessed)
    }

    #[test]
    fn the_sender_in_most_chats_is_the_business() {
        let cast = roster(&[
            ("a", &["Ram", "NEA Support"]),
            ("b", &["Sita", "NEA Support"]),
            ("c", &["NEA Support", "Hari"]),
        ])
        .cast(&Agents::default(), false);
        for (chat, customer) in [("a", "Ram"), ("b", "Sita"), ("c", "Hari")] {
            assert_eq!(role(&cast, chat, customer), (Role::Customer, false));
            assert_eq!(role(&cast, chat, "NEA Support"), (Role::Agent, false));
        }
    }

    #[test]
    fn a_customer_in_several_chats_stays_a_customer() {
        // Ram writes three times; each agent answers more people than that.
        let cast = roster(&[
            ("1", &["Ram", "Agent Sita"]),
            ("2", &["Ram", "Agent Hari"]),
            ("3", &["Ram", "Agent Sita"]),
            ("4", &["Gita", "Agent Sita", "Agent Hari"]),
            ("5", &["Maya", "Agent Hari"]),
            ("6", &["Bina", "Agent Sita"]),
            ("7", &["Kiran", "Agent Hari"]),
        ])
        .cast(&Agents::default(), false);
        assert_eq!(role(&cast, "1", "Ram"), (Role::Customer, false));
        assert_eq!(role(&cast, "2", "Agent Hari"), (Role::Agent, false));
        assert_eq!(role(&cast, "4", "Gita"), (Role::Customer, false));
        assert_eq!(role(&cast, "4", "Agent Hari"), (Role::Agent, false));
    }

    #[test]
    fn one_chat_of_two_strangers_is_a_guess_the_first_writer_the_customer() {
        let cast = roster(&[("chat", &["Ram", "Sita"])]).cast(&Agents::default(), false);
        assert_eq!(role(&cast, "chat", "Ram"), (Role::Customer, true));
        assert_eq!(role(&cast, "chat", "Sita"), (Role::Agent, true));
    }

    #[test]
    fn configured_agents_and_titles_settle_a_single_chat() {
        let agents = Agents::new(&["* (NEA)".into(), "sita".into()]).unwrap();
        let cast = roster(&[
            ("chat", &["Ram", "Sita"]),
            ("other", &["Hari", "Gopal (NEA)"]),
        ])
        .cast(&agents, false);
        assert_eq!(role(&cast, "chat", "Sita"), (Role::Agent, false));
        assert_eq!(role(&cast, "chat", "Ram"), (Role::Customer, false));
        assert_eq!(role(&cast, "other", "Gopal (NEA)"), (Role::Agent, false));

        let mut r = roster(&[("chat", &["Nepal Electricity", "Ram Sharma"])]);
        r.hint("chat", Hint::Title("Ram Sharma".into()));
        let cast = r.cast(&Agents::default(), false);
        assert_eq!(role(&cast, "chat", "Ram Sharma"), (Role::Customer, false));
        assert_eq!(
            role(&cast, "chat", "Nepal Electricity"),
            (Role::Agent, false)
        );
    }

    #[test]
    fn a_title_that_names_nobody_in_the_chat_is_ignored() {
        let mut r = roster(&[("g", &["Ram", "Sita"])]);
        r.hint("g", Hint::Title("Kathmandu outage group".into()));
        let cast = r.cast(&Agents::default(), false);
        assert!(cast.role("g", "Ram").guessed);
    }

    #[test]
    fn the_exporter_is_the_business() {
        let mut r = roster(&[("chat", &["Ram", "NEA Helpdesk"])]);
        r.business("NEA Helpdesk");
        let cast = r.cast(&Agents::default(), false);
        assert_eq!(role(&cast, "chat", "Ram"), (Role::Customer, false));
        assert_eq!(role(&cast, "chat", "NEA Helpdesk"), (Role::Agent, false));
    }

    #[test]
    fn a_lone_writer_is_a_customer_unless_known_as_an_agent() {
        let cast = roster(&[
            ("a", &["Ram"]),
            ("b", &["Page", "Sita"]),
            ("c", &["Page", "Hari"]),
            ("d", &["Page"]),
        ])
        .cast(&Agents::default(), false);
        assert_eq!(role(&cast, "a", "Ram"), (Role::Customer, false));
        assert_eq!(role(&cast, "d", "Page"), (Role::Agent, false));
    }

    #[test]
    fn an_exact_list_is_the_whole_business_side() {
        // The data would make the page an agent; the operator says only Sita is.
        let agents = Agents::new(&["Sita".into()]).unwrap();
        let cast = roster(&[("a", &["Ram", "Page"]), ("b", &["Sita", "Page"])]).cast(&agents, true);
        assert_eq!(role(&cast, "a", "Page"), (Role::Customer, false));
        assert_eq!(role(&cast, "a", "Ram"), (Role::Customer, false));
        assert_eq!(role(&cast, "b", "Sita"), (Role::Agent, false));
    }

    #[test]
    fn agent_patterns_are_whole_and_case_insensitive() {
        let a = Agents::new(&["NEA *".into(), "  Hari?  ".into(), "".into()]).unwrap();
        assert!(a.matches("nea support"));
        assert!(a.matches(" Hari1 "));
        assert!(!a.matches("Hari"));
        assert!(!a.matches("The NEA desk"));
        assert!(!a.matches("a.b"), "regex characters are literal");
        assert!(Agents::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn unseen_senders_are_guessed_customers() {
        let cast = roster(&[("a", &["Ram"])]).cast(&Agents::default(), false);
        assert_eq!(role(&cast, "a", "Nobody"), (Role::Customer, true));
        assert_eq!(role(&cast, "zz", "Ram"), (Role::Customer, true));
    }
}
