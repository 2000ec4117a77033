//! Helpdesk message bodies written as HTML, as plain text: tags cut (block
//! ends and `<br>` become line breaks, scripts and styles go with their
//! content), character references decoded, runs of blank lines folded.

/// Tags after which a line ends.
const BLOCK_TAGS: &[&str] = &[
    "br",
    "p",
    "div",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "table",
    "hr",
];

/// Elements whose content is not text to read.
const HIDDEN: &[&str] = &["script", "style", "head", "title"];

/// Whether `body` looks like HTML: a tag (`<` then a letter, `/` or `!`,
/// closed by `>`) or a `&nbsp;`.
pub(crate) fn is_html(body: &str) -> bool {
    let tag = body.match_indices('<').any(|(at, _)| {
        let after = &body[at + 1..];
        after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!')
            && after.contains('>')
    });
    tag || body.contains("&nbsp;")
}

/// `body` as text (unchanged when it is not HTML).
pub(crate) fn to_text(body: &str) -> String {
    if !is_html(body) {
        return body.trim().to_string();
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    let mut hidden: Option<&str> = None;
    while let Some(open) = rest.find('<') {
        if hidden.is_none() {
            out.push_str(&rest[..open]);
        }
        let after = &rest[open + 1..];
        let starts_tag =
            after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        let close = after.find('>').filter(|_| starts_tag);
        let Some(close) = close else {
            // A lone `<`: text, not a tag.
            if hidden.is_none() {
                out.push('<');
            }
            rest = after;
            continue;
        };
        let tag = &after[..close];
        rest = &after[close + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if let Some(h) = hidden {
            if closing && name == h {
                hidden = None;
            }
            continue;
        }
        if !closing && let Some(h) = HIDDEN.iter().find(|h| **h == name) {
            hidden = Some(h);
            continue;
        }
        // A block's start and end, and a break, end the line.
        let breaks = closing || name == "br" || name == "hr" || !out.ends_with('\n');
        if BLOCK_TAGS.contains(&name.as_str()) && breaks {
            out.push('\n');
        }
    }
    if hidden.is_none() {
        out.push_str(rest);
    }
    let decoded = html_escape::decode_html_entities(&out).replace('\u{a0}', " ");
    // Fold the blank lines the markup left behind.
    let mut text = String::with_capacity(decoded.len());
    let mut blank = 0;
    for line in decoded.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        text.push_str(line.trim_start());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markup_becomes_text() {
        assert_eq!(
            to_text("<p>Hi Ram,</p><p>Your meter &amp; bill<br>are fixed.</p>"),
            "Hi Ram,\nYour meter & bill\nare fixed."
        );
        assert_eq!(
            to_text("<div>Power is <b>back</b>&nbsp;now</div><style>p{}</style>"),
            "Power is back now"
        );
        assert_eq!(to_text("<ul><li>one</li><li>two</li></ul>"), "one\ntwo");
        assert_eq!(to_text("plain 3 < 4 text"), "plain 3 < 4 text");
        assert_eq!(to_text("<p>a < b</p>"), "a < b");
        assert_eq!(
            to_text("<p>&#2348;&#2340;&#2381;&#2340;&#2368;</p>"),
            "बत्ती"
        );
    }

    proptest! {
        /// Any text at all is read without a panic.
        #[test]
        fn any_body_is_read(body in "\\PC{0,60}") {
            let _ = to_text(&body);
        }

        /// Words wrapped in any tags come out as the same words, in order.
        #[test]
        fn words_survive_their_markup(
            parts in proptest::collection::vec(
                ("(p|div|b|span|br|li|td)", "[a-zA-Zé0-9]{1,8}"), 1..12),
        ) {
            let body: String = parts
                .iter()
                .map(|(tag, word)| format!("<{tag} class=\"x\">{word} </{tag}>"))
                .collect();
            let words: Vec<&str> = parts.iter().map(|(_, w)| w.as_str()).collect();
            let text = to_text(&body);
            prop_assert_eq!(text.split_whitespace().collect::<Vec<_>>(), words);
        }
    }
}
