//! Input preparation: emoji translation, tokenization, and case analysis,
//! matching the reference's `SentiText` and the emoji walk in
//! `polarity_scores` (vaderSentiment 3.3.2, `vaderSentiment.py`). The two
//! casing calls, `str.lower()` and `str.isupper()`, go through
//! [`crate::casing`], which answers from tables recorded from the pinned
//! CPython. The Rust standard library's casing data tracks a different
//! Unicode version, and a CI grep keeps it out of this path.

use crate::casing::{py_isupper, py_lower};
use crate::data::HashMap;
use std::borrow::Cow;

/// One token of the reference's words-and-emoticons list, carrying the two
/// derived forms the scoring pipeline reads: the Python `str.lower()` form and
/// the Python `str.isupper()` fact.
pub(crate) struct Token<'a> {
    /// `token.lower()`, borrowed from the text when lowering changes nothing
    /// (most tokens of lowercase text), so no per-token allocation.
    pub(crate) lower: Cow<'a, str>,
    /// `token.isupper()`.
    pub(crate) is_upper: bool,
}

/// Python's `str.split()` / `str.strip()` whitespace class: every character
/// where `str.isspace()` is true. That is the Unicode `White_Space` set plus
/// the four ASCII separator controls U+001C through U+001F, which carry
/// bidirectional class B or S and count as space in CPython but not in the
/// Unicode `White_Space` property Rust's `char::is_whitespace` implements.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// [`is_py_space`] for one byte of ASCII text: the ASCII members of Python's
/// whitespace class are `\t \n \x0b \x0c \r` (U+0009 through U+000D), the
/// separator controls U+001C through U+001F, and the space. Not
/// `u8::is_ascii_whitespace`, which leaves out U+000B and U+001C through
/// U+001F; `ascii_space_bytes_equal_the_char_class` checks all 128.
fn is_py_space_byte(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | 0x1c..=0x1f | b' ')
}

/// Python `str.strip()` with no argument: trim `is_py_space` from both ends.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// The emoji walk at the top of the reference's `polarity_scores`: each input
/// character present in the emoji lexicon is replaced by its description, with
/// one space inserted when the previously emitted character was not a space.
///
/// ```python
/// text_no_emoji = ""
/// prev_space = True
/// for chr in text:
///     if chr in self.emojis:
///         description = self.emojis[chr]
///         if not prev_space:
///             text_no_emoji += ' '
///         text_no_emoji += description
///         prev_space = False
///     else:
///         text_no_emoji += chr
///         prev_space = chr == ' '
/// text = text_no_emoji.strip()
/// ```
///
/// `prev_space` tracks the ASCII space character only, exactly as above, and
/// the final strip is Python's whitespace strip.
///
/// `emoji_min` is the smallest key of `emojis`: a character below it is
/// not looked up, and text without one at or above it (all ASCII text, as
/// no key is ASCII) is returned stripped and borrowed. For ASCII text that
/// check is `str::is_ascii`, a word-at-a-time scan, instead of a decode of
/// every char: with a non-ASCII `emoji_min` (U+00A9 in the vendored data,
/// which `Tables::load` asserts in debug builds and a data test pins) every
/// ASCII char is below it. With an ASCII `emoji_min` the shortcut does not
/// apply and the char scan decides alone, so the answer never rests on the
/// assumption, only the speed does.
pub(crate) fn translate_emojis<'a>(
    text: &'a str,
    emojis: &HashMap<char, String>,
    emoji_min: char,
) -> Cow<'a, str> {
    if (!emoji_min.is_ascii() && text.is_ascii()) || text.chars().all(|c| c < emoji_min) {
        return Cow::Borrowed(py_strip(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(description) = (c >= emoji_min).then(|| emojis.get(&c)).flatten() {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(description);
            prev_space = false;
        } else {
            out.push(c);
            prev_space = c == ' ';
        }
    }
    match py_strip(&out) {
        stripped if stripped.len() == out.len() => Cow::Owned(out),
        stripped => Cow::Owned(stripped.to_string()),
    }
}

/// The reference's `_strip_punc_if_word`: strip leading and trailing ASCII
/// punctuation (`string.punctuation`, exactly Rust's `is_ascii_punctuation`
/// set), and keep the stripped form only when it is longer than two
/// characters, so ":)" and "8-)" survive as themselves.
fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    // A char is 1 to 4 bytes: up to 2 bytes is at most 2 chars, over 8 bytes
    // at least 3, and only the lengths between need the count.
    let at_most_two = match stripped.len() {
        0..=2 => true,
        3..=8 => stripped.chars().count() <= 2,
        _ => false,
    };
    if at_most_two {
        token
    } else {
        stripped
    }
}

/// The reference's words-and-emoticons list: whitespace split, then the
/// punctuation strip, with the two derived forms computed once per token.
///
/// ASCII text (nearly every support message) takes
/// [`ascii_words_and_emoticons`], one pass over the bytes; other text takes
/// [`general_words_and_emoticons`]. The two agree on every ASCII text,
/// which the proptest `ascii_path_equals_general_path` holds.
pub(crate) fn words_and_emoticons(text: &str) -> Vec<Token<'_>> {
    if text.is_ascii() {
        ascii_words_and_emoticons(text)
    } else {
        general_words_and_emoticons(text)
    }
}

/// [`words_and_emoticons`] for ASCII text, by bytes: a byte split in place
/// of the char-by-char split, a byte trim in place of the char-wise
/// punctuation trim, and the two casing facts from one walk of the word in
/// place of `py_lower` and `py_isupper`, which walked each token two or
/// three times and re-checked each time that it was ASCII.
///
/// The split on [`is_py_space_byte`] with empty pieces dropped is the
/// general path's split on [`is_py_space`]. Each piece is followed by one
/// separator byte, which is how the loop keeps its offset in `text`; every
/// offset is a char boundary in ASCII text, so the slicing in
/// [`ascii_token`] never misses.
fn ascii_words_and_emoticons(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = 0;
    for word in text.as_bytes().split(|&b| is_py_space_byte(b)) {
        if !word.is_empty() {
            tokens.push(ascii_token(text, start, word));
        }
        start += word.len() + 1;
    }
    tokens
}

/// One token of [`ascii_words_and_emoticons`]: `word` is the bytes of
/// `text` from offset `start`.
///
/// `strip_punc_if_word` trims ASCII punctuation from both ends and keeps
/// the trimmed form only when it is longer than two chars, which in ASCII
/// text are bytes; a word of punctuation only trims to nothing and keeps
/// itself. The trim removes no letter, so the letter facts of the whole
/// word are those of the kept form, whichever it is. From them, as in the
/// ASCII fast paths of `py_lower` and `py_isupper` (whose agreement with the
/// CPython tables `casing::tests::ascii_fast_paths_equal_the_tables`
/// checks): `lower` is the kept form itself, borrowed, when it holds no
/// `A-Z`, and its ASCII lowercase otherwise; `is_upper` is "some `A-Z` and
/// no `a-z`".
fn ascii_token<'a>(text: &'a str, start: usize, word: &[u8]) -> Token<'a> {
    let is_word_byte = |b: &u8| !b.is_ascii_punctuation();
    let (from, to) = match (
        word.iter().position(is_word_byte),
        word.iter().rposition(is_word_byte),
    ) {
        (Some(first), Some(last)) if last - first >= 2 => (start + first, start + last + 1),
        _ => (start, start + word.len()),
    };
    let kept = text.get(from..to).unwrap_or_default();
    let (has_upper, has_lower) = word.iter().fold((false, false), |(upper, lower), b| {
        (
            upper | b.is_ascii_uppercase(),
            lower | b.is_ascii_lowercase(),
        )
    });
    Token {
        lower: if has_upper {
            Cow::Owned(kept.to_ascii_lowercase())
        } else {
            Cow::Borrowed(kept)
        },
        is_upper: has_upper && !has_lower,
    }
}

/// [`words_and_emoticons`] for any text: split on [`is_py_space`], strip
/// with [`strip_punc_if_word`], and case through [`crate::casing`].
fn general_words_and_emoticons(text: &str) -> Vec<Token<'_>> {
    text.split(is_py_space)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let stripped = strip_punc_if_word(w);
            Token {
                lower: py_lower(stripped),
                is_upper: py_isupper(stripped),
            }
        })
        .collect()
}

/// The reference's `allcap_differential`: true when some but not all tokens
/// are all-caps.
///
/// ```python
/// cap_differential = len(words) - allcap_words
/// if 0 < cap_differential < len(words): is_different = True
/// ```
///
/// `0 < len - upper < len` holds exactly when at least one token is not
/// all-caps and at least one is, which is how it is spelled here.
pub(crate) fn allcap_differential(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| !t.is_upper) && tokens.iter().any(|t| t.is_upper)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::{
        allcap_differential, ascii_words_and_emoticons, general_words_and_emoticons, is_py_space,
        is_py_space_byte, py_strip, strip_punc_if_word, translate_emojis, words_and_emoticons,
        Token,
    };
    use crate::data::HashMap;
    use proptest::prelude::*;
    use std::borrow::Cow;

    /// A token list as comparable values: the lowered form, whether it is
    /// borrowed from the text, and the `isupper()` fact.
    fn facts(tokens: &[Token]) -> Vec<(String, bool, bool)> {
        tokens
            .iter()
            .map(|t| {
                let borrowed = matches!(t.lower, Cow::Borrowed(_));
                (t.lower.to_string(), borrowed, t.is_upper)
            })
            .collect()
    }

    #[test]
    fn ascii_space_bytes_equal_the_char_class() {
        for b in 0_u8..=0x7F {
            assert_eq!(is_py_space_byte(b), is_py_space(char::from(b)), "{b:#x}");
        }
    }

    /// Pieces of ASCII text biased to the tokenizer's decisions: letters of
    /// both cases, digits, punctuation runs and lone punctuation around
    /// words, two- and three-char forms at the strip threshold, emoticons,
    /// and every ASCII member of Python's whitespace class.
    fn ascii_piece() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a", "Z", "good", "GOOD", "Good", "gOOD", "no", "NO", "ok", "9", "42", "A1", "a1", "!",
            "?", ".", ",", "-", "'", "\"", "(", ")", "--", "...", "!!!", "?!", ":)", ":(", "8-)",
            "<3", "</3", ":-D", ":D", "=)", ";)", "(:", "don't", "DON'T", "is?", "so!", "--good--",
            "GOOD!", "x.y", " ", "  ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\r\n", "\u{1c}",
            "\u{1d}", "\u{1e}", "\u{1f}", "\u{0}", "\u{7f}", "_", "@", "#1", "~",
        ])
        .prop_map(String::from);
        prop_oneof![
            4 => pieces,
            1 => proptest::char::range('\u{0}', '\u{7f}').prop_map(String::from),
        ]
    }

    /// Non-ASCII pieces: Unicode-only spaces (U+0085, U+00A0, U+3000),
    /// cased letters with table-only casing (sigma, dotted I, titlecase Dz),
    /// and an emoji.
    fn any_piece() -> impl Strategy<Value = String> {
        let wide = prop::sample::select(vec![
            "\u{85}",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{3a3}",
            "\u{130}",
            "\u{1c5}",
            "\u{e9}",
            "\u{c9}",
            "\u{df}",
            "\u{1f496}",
            "\u{a7ce}",
        ])
        .prop_map(String::from);
        prop_oneof![4 => ascii_piece(), 1 => wide]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The ASCII fast path equals the general path, token for token, on
        /// ASCII text: the same lowered form, borrowed in the same cases,
        /// and the same `isupper()`.
        #[test]
        fn ascii_path_equals_general_path(
            pieces in prop::collection::vec(ascii_piece(), 0..24)
        ) {
            let text = pieces.concat();
            prop_assert!(text.is_ascii());
            prop_assert_eq!(
                facts(&ascii_words_and_emoticons(&text)),
                facts(&general_words_and_emoticons(&text)),
                "{:?}", text
            );
            prop_assert_eq!(
                facts(&words_and_emoticons(&text)),
                facts(&general_words_and_emoticons(&text)),
                "{:?}", text
            );
        }

        /// Text with a non-ASCII char goes to the general path.
        #[test]
        fn non_ascii_text_takes_the_general_path(
            pieces in prop::collection::vec(any_piece(), 0..24)
        ) {
            let text = pieces.concat();
            prop_assert_eq!(
                facts(&words_and_emoticons(&text)),
                facts(&general_words_and_emoticons(&text)),
                "{:?}", text
            );
        }
    }

    /// Fixed cases for both paths, including the non-ASCII ones the
    /// dispatch must route to the general path: a Unicode-only space
    /// (U+00A0, U+3000), table casing (final sigma), and an ASCII word next
    /// to a non-ASCII char.
    #[test]
    fn tokenizer_paths_agree_on_fixed_cases() {
        for text in [
            "",
            " \t\n\u{b}\u{c}\r\u{1c}\u{1d}\u{1e}\u{1f} ",
            "GOOD,\u{b}bad!\u{1f}Ok? :) 8-) <3 --x-- !!! is? DON'T",
            "a\u{0}b \u{7f}",
        ] {
            assert_eq!(
                facts(&ascii_words_and_emoticons(text)),
                facts(&general_words_and_emoticons(text)),
                "{text:?}"
            );
        }
        type Facts<'a> = &'a [(&'a str, bool, bool)];
        let cases: [(&str, Facts); 4] = [
            (
                "GOOD\u{a0}bad",
                &[("good", false, true), ("bad", true, false)],
            ),
            ("ok\u{3000}OK", &[("ok", true, false), ("ok", false, true)]),
            (
                "A\u{3a3} x",
                &[("a\u{3c2}", false, true), ("x", true, false)],
            ),
            ("caf\u{e9}!", &[("caf\u{e9}", true, false)]),
        ];
        for (text, expected) in cases {
            let expected: Vec<(String, bool, bool)> = expected
                .iter()
                .map(|&(l, b, u)| (l.to_string(), b, u))
                .collect();
            assert_eq!(facts(&words_and_emoticons(text)), expected, "{text:?}");
        }
    }

    #[test]
    fn python_space_class_covers_separator_controls() {
        assert!(is_py_space(' '));
        assert!(is_py_space('\t'));
        assert!(is_py_space('\n'));
        assert!(is_py_space('\u{1c}'));
        assert!(is_py_space('\u{1f}'));
        assert!(!is_py_space('a'));
        assert!(!is_py_space('!'));
    }

    #[test]
    fn strip_trims_both_ends_only() {
        assert_eq!(py_strip("  a b  "), "a b");
        assert_eq!(py_strip("\t\nx\u{1c}"), "x");
        assert_eq!(py_strip(""), "");
    }

    #[test]
    fn punctuation_strip_keeps_short_forms() {
        assert_eq!(strip_punc_if_word("happy,"), "happy");
        assert_eq!(strip_punc_if_word("--good--"), "good");
        assert_eq!(strip_punc_if_word(":)"), ":)");
        assert_eq!(strip_punc_if_word("8-)"), "8-)");
        // "is?" strips to "is", two characters, so the original survives.
        assert_eq!(strip_punc_if_word("is?"), "is?");
        assert_eq!(strip_punc_if_word("so!"), "so!");
        assert_eq!(strip_punc_if_word("don't"), "don't");
        assert_eq!(strip_punc_if_word("!!!"), "!!!");
    }

    #[test]
    fn tokenizer_splits_on_whitespace_runs() {
        let toks = words_and_emoticons("  GOOD \t bad,  ");
        let lowers: Vec<&str> = toks.iter().map(|t| &*t.lower).collect();
        assert_eq!(lowers, ["good", "bad"]);
        assert!(toks[0].is_upper);
        assert!(!toks[1].is_upper);
        assert!(words_and_emoticons("").is_empty());
        assert!(words_and_emoticons("   ").is_empty());
    }

    fn translate_emojis_min(text: &str, emojis: &HashMap<char, String>) -> String {
        let min = emojis.keys().copied().min().unwrap_or(char::MAX);
        translate_emojis(text, emojis, min).into_owned()
    }

    #[test]
    fn emoji_walk_inserts_spaces_like_the_reference() {
        let mut emojis = HashMap::default();
        emojis.insert('\u{1F498}', String::from("heart with arrow"));
        emojis.insert('\u{1F48B}', String::from("kiss mark"));
        // After a non-space character: one space inserted.
        assert_eq!(
            translate_emojis_min("x\u{1F498}", &emojis),
            "x heart with arrow"
        );
        // After a space: no extra space.
        assert_eq!(
            translate_emojis_min("x \u{1F498}", &emojis),
            "x heart with arrow"
        );
        // Adjacent emoji: prev_space is false after a description, so a space
        // separates them even though none was typed.
        assert_eq!(
            translate_emojis_min("\u{1F498}\u{1F48B}", &emojis),
            "heart with arrow kiss mark"
        );
        // Text after an emoji gets no inserted space: the walk only inserts
        // before descriptions.
        assert_eq!(
            translate_emojis_min("\u{1F498}y", &emojis),
            "heart with arrowy"
        );
        // Leading and trailing whitespace stripped at the end.
        assert_eq!(translate_emojis_min("  plain  ", &emojis), "plain");
    }

    #[test]
    fn cap_differential_needs_a_mix() {
        let mixed = words_and_emoticons("GOOD bad");
        assert!(allcap_differential(&mixed));
        let all_caps = words_and_emoticons("GOOD BAD");
        assert!(!allcap_differential(&all_caps));
        let no_caps = words_and_emoticons("good bad");
        assert!(!allcap_differential(&no_caps));
        assert!(!allcap_differential(&[]));
    }
}
