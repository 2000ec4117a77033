//! What a search asks: `q` read into clauses, all of which a conversation
//! must match (in any order, anywhere in its messages or summary). A word
//! is a clause; a quoted phrase is one clause whose words must follow each
//! other within one message (or the summary), and so is a word that splits
//! into several tokens (`484.91.181`, `don't`).

use super::text::{self, Token};

/// One thing a conversation must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// A token: any of these terms.
    Word(Vec<u64>),
    /// Tokens one after the other: for each, any of its terms.
    Phrase(Vec<Vec<u64>>),
}

impl Clause {
    /// The terms of each position (one position for a word).
    pub fn positions(&self) -> &[Vec<u64>] {
        match self {
            Clause::Word(terms) => std::slice::from_ref(terms),
            Clause::Phrase(words) => words,
        }
    }
}

/// A parsed `q`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub clauses: Vec<Clause>,
}

impl Query {
    /// Reads `q`: words separated by spaces, phrases in double quotes
    /// (straight or curly; an unclosed quote runs to the end). Punctuation
    /// separates tokens as in the index. Repeated clauses count once.
    pub fn parse(q: &str) -> Self {
        let mut clauses: Vec<Clause> = Vec::new();
        let mut add = |chunk: &str| {
            let mut words: Vec<Vec<u64>> = Vec::new();
            text::tokens(chunk, |t: Token| words.push(text::query_terms(&t)));
            let clause = match words.len() {
                0 => return,
                1 => Clause::Word(words.remove(0)),
                _ => Clause::Phrase(words),
            };
            if !clauses.contains(&clause) {
                clauses.push(clause);
            }
        };
        let mut rest = q;
        while !rest.is_empty() {
            match rest.find(['"', '“', '”']) {
                Some(open) => {
                    rest[..open].split_whitespace().for_each(&mut add);
                    let after = &rest[open..];
                    let after = &after[after.chars().next().map_or(1, char::len_utf8)..];
                    let close = after.find(['"', '“', '”']).unwrap_or(after.len());
                    add(&after[..close]);
                    rest = after.get(close..).unwrap_or("");
                    rest = rest.strip_prefix(['"', '“', '”']).unwrap_or(rest);
                }
                None => {
                    rest.split_whitespace().for_each(&mut add);
                    rest = "";
                }
            }
        }
        Query { clauses }
    }

    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::text::{Form, term};

    fn shape(q: &str) -> Vec<usize> {
        Query::parse(q)
            .clauses
            .iter()
            .map(|c| c.positions().len())
            .collect()
    }

    #[test]
    fn words_phrases_and_split_tokens() {
        assert_eq!(shape("power cut"), [1, 1]);
        assert_eq!(shape("\"power cut\" lalitpur"), [2, 1]);
        assert_eq!(shape("lalitpur “power cut again”"), [1, 3]);
        assert_eq!(shape("id 484.91.181"), [1, 3]);
        assert_eq!(shape("\"unclosed phrase here"), [3]);
        assert_eq!(shape("power POWER power"), [1], "repeats count once");
        assert_eq!(shape("  !!  \"\" "), Vec::<usize>::new());
        assert!(Query::parse("...").is_empty());
    }

    #[test]
    fn each_word_carries_its_alternatives() {
        let q = Query::parse("Bills छैन");
        let Clause::Word(bills) = &q.clauses[0] else {
            panic!("{q:?}")
        };
        assert!(bills.contains(&term(Form::Exact, "bills")));
        assert!(bills.contains(&term(Form::Exact, "bil")));
        assert!(bills.contains(&term(Form::Loose, "bil")));
        let Clause::Word(chaina) = &q.clauses[1] else {
            panic!("{q:?}")
        };
        assert_eq!(
            chaina,
            &[term(Form::Exact, "छैन"), term(Form::Loose, "chain")]
        );
    }
}
