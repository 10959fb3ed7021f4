//! Outbound → Slack message: Block Kit (a header, a context line with
//! worker / task / elapsed, a section with the latest detail) plus a plain
//! `text` fallback, every piece of event text escaped and cut to Slack's
//! limits.

use herald_messaging::{MessageKind, Outbound, Severity, truncate_chars};
use slack_morphism::prelude::*;

/// `text` fallback limit (Slack truncates beyond 40,000; 4,000 keeps
/// notifications readable).
pub const MAX_TEXT: usize = 4000;
/// Section block text limit.
pub const MAX_SECTION: usize = 3000;
/// Header block limit (plain text).
pub const MAX_HEADER: usize = 150;
/// Context block elements limit.
const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Each context element's text limit.
const MAX_CONTEXT_TEXT: usize = 2000;

/// Slack's three control characters: with `&`, `<`, `>` escaped, event
/// text can never form `<!channel>`, `<!here>`, `<@U…>` or a link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escape, then cut to `max` characters without splitting an entity.
fn escaped(text: &str, max: usize) -> String {
    cut_escaped(&escape(text), max)
}

/// Cut already-escaped text to `max` characters; a partial `&amp;`,
/// `&lt;` or `&gt;` left before the ellipsis is dropped.
fn cut_escaped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut = truncate_chars(text, max);
    match cut.rfind('&') {
        Some(at) if !cut[at..].contains(';') => format!("{}…", &cut[..at]),
        _ => cut,
    }
}

fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Progress => ":large_blue_circle:",
        Severity::Attention => ":large_orange_circle:",
        Severity::Success => ":white_check_mark:",
        Severity::Failure => ":x:",
        Severity::Neutral => ":white_circle:",
    }
}

/// Whether `raw` is a Slack mention as a config may name one: a user
/// (`<@U…>`, `<@W…>`), a user group (`<!subteam^S…>`), or `<!here>` /
/// `<!channel>`. Only these, written exactly so, are ever sent unescaped.
pub fn is_mention(raw: &str) -> bool {
    let id = |s: &str, first: &[char]| {
        s.len() >= 2
            && s.len() <= 32
            && s.starts_with(first)
            && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    if raw == "<!here>" || raw == "<!channel>" {
        return true;
    }
    if let Some(user) = raw.strip_prefix("<@").and_then(|r| r.strip_suffix('>')) {
        return id(user, &['U', 'W']);
    }
    if let Some(group) = raw.strip_prefix("<!subteam^").and_then(|r| r.strip_suffix('>')) {
        return id(group, &['S']);
    }
    false
}

/// The configured mentions, as Slack markup (only well-formed ones).
fn mention_line(msg: &Outbound) -> Option<String> {
    let mentions: Vec<&str> = msg
        .mentions
        .iter()
        .map(String::as_str)
        .filter(|m| is_mention(m))
        .collect();
    (!mentions.is_empty()).then(|| mentions.join(" "))
}

/// The plain `text` fallback (notifications, screen readers). The
/// configured mentions lead it, so the notification pings them.
pub fn fallback(msg: &Outbound) -> String {
    let mut text = format!(
        "{} {} — {}",
        emoji(msg.severity),
        escape(&msg.title),
        escape(&msg.state)
    );
    if let (MessageKind::Terminal, Some(body)) = (msg.kind, &msg.body) {
        text.push_str(": ");
        text.push_str(&escape(body));
    }
    match mention_line(msg) {
        Some(mentions) => format!("{mentions} {}", cut_escaped(&text, MAX_TEXT - mentions.len() - 1)),
        None => cut_escaped(&text, MAX_TEXT),
    }
}

/// The blocks: header (plain text, so nothing in it is markup), context,
/// and a section with the summary or reason.
pub fn blocks(msg: &Outbound) -> Vec<SlackBlock> {
    let header_text = truncate_chars(&format!("{} — {}", msg.title, msg.state), MAX_HEADER);
    let mut blocks = vec![SlackBlock::Header(SlackHeaderBlock::new(
        SlackBlockPlainText::new(header_text).into(),
    ))];
    let elements: Vec<SlackContextBlockElement> = msg
        .fields
        .iter()
        .take(MAX_CONTEXT_ELEMENTS)
        .map(|f| {
            let text = escaped(&format!("{}: {}", f.name, f.value), MAX_CONTEXT_TEXT);
            SlackContextBlockElement::Plain(SlackBlockPlainText::new(text))
        })
        .collect();
    if !elements.is_empty() {
        blocks.push(SlackBlock::Context(SlackContextBlock::new(elements)));
    }
    if let Some(body) = &msg.body {
        let text = escaped(body, MAX_SECTION);
        blocks.push(SlackBlock::Section(
            SlackSectionBlock::new().with_text(SlackBlockText::Plain(SlackBlockPlainText::new(text))),
        ));
    }
    if let Some(mentions) = mention_line(msg) {
        blocks.push(SlackBlock::Section(SlackSectionBlock::new().with_text(
            SlackBlockText::MarkDown(SlackBlockMarkDownText::new(format!("cc {mentions}"))),
        )));
    }
    if let Some(link) = msg.link.as_deref().and_then(link_markup) {
        blocks.push(SlackBlock::Context(SlackContextBlock::new(vec![
            SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(link)),
        ])));
    }
    // Acknowledge: its token is the button's value (at most 2,000
    // characters); Slack sends it back in a `block_actions` payload.
    if let Some(token) = msg.acknowledge.as_ref().filter(|t| t.chars().count() <= 2000) {
        let button = SlackBlockButtonElement::new(SlackBlockPlainText::new("Acknowledge".into()).into())
            .with_action_id(ACKNOWLEDGE_ACTION.into())
            .with_value(token.clone())
            .with_style(SlackBlockButtonStyle::Primary);
        blocks.push(SlackBlock::Actions(SlackActionsBlock::new(vec![
            SlackActionBlockElement::Button(button),
        ])));
    }
    blocks
}

/// The `action_id` of herald's Acknowledge button.
pub const ACKNOWLEDGE_ACTION: &str = "herald_acknowledge";

/// `<url|source>` for a link, or `None` for what Slack could misread (its
/// link syntax has no escape for `|` and `>`; `<` and `&` are escaped).
fn link_markup(url: &str) -> Option<String> {
    let plausible = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['|', '>', ' ', '\n'])
        && url.chars().count() <= MAX_CONTEXT_TEXT - 10;
    plausible.then(|| format!("<{}|source>", url.replace('&', "&amp;").replace('<', "&lt;")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_mentions_are_sent_and_they_lead_the_text() {
        for ok in [
            "<@U024BE7LH>",
            "<@W1234>",
            "<!subteam^SAZ94GDB8>",
            "<!here>",
            "<!channel>",
        ] {
            assert!(is_mention(ok), "{ok}");
        }
        for bad in [
            "@ana",
            "<@u12>",
            "<@U12|ana>",
            "<!everyone>",
            "<!subteam^X1>",
            "<@U12> x",
            "U12",
        ] {
            assert!(!is_mention(bad), "{bad}");
        }
        let mut msg = msg("boom");
        msg.mentions = vec!["<@U024BE7LH>".into(), "<!subteam^S1>".into(), "<@bad>".into()];
        assert!(
            fallback(&msg).starts_with("<@U024BE7LH> <!subteam^S1> "),
            "{}",
            fallback(&msg)
        );
        let blocks = serde_json::to_string(&blocks(&msg)).unwrap();
        assert!(blocks.contains("cc <@U024BE7LH> <!subteam^S1>"), "{blocks}");
        assert!(!blocks.contains("<@bad>"), "{blocks}");
    }

    fn msg(body: &str) -> Outbound {
        Outbound {
            kind: MessageKind::Terminal,
            title: "w · t".into(),
            state: "failed".into(),
            severity: Severity::Failure,
            fields: vec![],
            body: Some(body.into()),
            idempotency_key: None,
            subject: None,
            link: None,
            acknowledge: None,
            mentions: Vec::new(),
        }
    }

    #[test]
    fn control_sequences_cannot_ping() {
        let t = fallback(&msg("<!channel> <!here> <@U123> & co"));
        assert!(!t.contains("<!channel>") && !t.contains("<@U123>"), "{t}");
        assert!(t.contains("&lt;!channel&gt;") && t.contains("&amp; co"), "{t}");
    }

    #[test]
    fn long_text_is_cut_without_breaking_entities() {
        let t = fallback(&msg(&"<".repeat(3000)));
        assert!(t.chars().count() <= MAX_TEXT);
        assert!(t.ends_with('…'));
        let before = t.trim_end_matches('…');
        assert!(before.ends_with("&lt;"), "{}", &before[before.len() - 10..]);
        let section = escaped(&"x".repeat(10_000), MAX_SECTION);
        assert_eq!(section.chars().count(), MAX_SECTION);
    }

    #[test]
    fn a_link_is_slack_link_markup_or_nothing() {
        assert_eq!(
            link_markup("https://prom.example/graph?a=1&b=<2>").as_deref(),
            None,
            "`>` cannot be written inside Slack's link syntax"
        );
        assert_eq!(
            link_markup("https://prom.example/graph?a=1&b=2").as_deref(),
            Some("<https://prom.example/graph?a=1&amp;b=2|source>")
        );
        assert_eq!(link_markup("javascript:alert(1)"), None);
        assert_eq!(link_markup("https://x/a|b"), None);
    }
}
