//! The autoresponse filter: a message is an automated autoresponse when its
//! sender is a bot or its text contains one of the configured patterns
//! (self-service USSD codes such as `*977#`). Matching is case-insensitive
//! for ASCII letters, in one pass over the text whatever the number of patterns.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};

use crate::model::Role;

#[derive(Debug, Clone)]
pub struct AutoresponseFilter {
    /// `None` when no patterns are configured.
    patterns: Option<AhoCorasick>,
}

impl AutoresponseFilter {
    pub fn new(patterns: &[String]) -> Self {
        let patterns: Vec<&str> = patterns
            .iter()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        let automaton = (!patterns.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        Self {
            patterns: automaton,
        }
    }

    pub fn is_autoresponse(&self, role: Role, text: &str) -> bool {
        role == Role::Bot || self.patterns.as_ref().is_some_and(|p| p.is_match(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_and_patterns_are_autoresponses() {
        let f = AutoresponseFilter::new(&["*977#".into(), "Auto-Reply".into()]);
        assert!(f.is_autoresponse(Role::Bot, "hello"));
        assert!(f.is_autoresponse(Role::Agent, "Dial *977# to check your balance"));
        assert!(f.is_autoresponse(Role::Agent, "[auto-reply] we are closed"));
        assert!(!f.is_autoresponse(Role::Customer, "I dialled 977 and nothing"));
        assert!(!f.is_autoresponse(Role::Customer, "बत्ती छैन *97#"));
    }

    #[test]
    fn no_patterns_means_only_bots() {
        let f = AutoresponseFilter::new(&[]);
        assert!(!f.is_autoresponse(Role::Agent, "*977#"));
        assert!(f.is_autoresponse(Role::Bot, ""));
    }
}
