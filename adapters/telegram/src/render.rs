//! Outbound → Telegram HTML. Every piece of event text is escaped (`&`,
//! `<`, `>`, `"`), only herald's own `<b>` tag is markup, and the visible
//! text (what Telegram counts after entity parsing) stays within 4096
//! characters: the body is cut on a character boundary before escaping, so
//! a cut can never break a tag or an entity.

use herald_messaging::{Outbound, truncate_chars};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Telegram's limit on message text after entity parsing.
pub const MAX_TEXT: usize = 4096;

/// Escape for Telegram's HTML parse mode. An `@` is followed by a word
/// joiner (U+2060), so event text cannot form an `@username` mention that
/// Telegram would notify.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '@' => out.push_str("@\u{2060}"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// The message's inline keyboard: Acknowledge, where the notification asks
/// for someone (its token is the `callback_data`, 1–64 bytes). A send, an
/// edit and a probe of one message carry the same keyboard: an edit without
/// it would remove the button, and a probe would never read "not modified".
pub fn keyboard(msg: &Outbound) -> Option<InlineKeyboardMarkup> {
    let token = msg.acknowledge.as_ref().filter(|t| (1..=64).contains(&t.len()))?;
    Some(InlineKeyboardMarkup::new(vec![vec![
        InlineKeyboardButton::callback("Acknowledge", token.clone()),
    ]]))
}

/// The user id of a Telegram mention as a config may name one:
/// `tg://user?id=<id>`.
pub fn mention_user(raw: &str) -> Option<u64> {
    let id = raw.strip_prefix("tg://user?id=")?;
    if id.is_empty() || id.len() > 20 || !id.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// What a mention shows in the chat (Telegram needs visible text).
const MENTION_LABEL: &str = "on call";

/// The message in HTML parse mode.
pub fn html(msg: &Outbound) -> String {
    // (visible text, markup) pairs; visible lengths are counted raw.
    let headline = format!("{} {} — {}", msg.severity.emoji(), msg.title, msg.state);
    let headline = truncate_chars(&headline, 256);
    let mut visible = headline.chars().count();
    let mut out = format!("<b>{}</b>", escape(&headline));
    for f in &msg.fields {
        let line = truncate_chars(&format!("{}: {}", f.name, f.value), 256);
        if visible + 1 + line.chars().count() > MAX_TEXT - 16 {
            break;
        }
        visible += 1 + line.chars().count();
        out.push('\n');
        out.push_str(&escape(&line));
    }
    if let Some(body) = &msg.body {
        let room = MAX_TEXT.saturating_sub(visible + 2);
        if room > 1 {
            let body = truncate_chars(body, room);
            visible += 2 + body.chars().count();
            out.push_str("\n\n");
            out.push_str(&escape(&body));
        }
    }
    // Where to look, as a link (only herald's own `<a>`; the URL escaped
    // as an attribute).
    if let Some(link) = &msg.link
        && visible + 8 <= MAX_TEXT
        && link.chars().count() <= 2048
    {
        out.push_str(&format!("\n<a href=\"{}\">source</a>", escape(link)));
        visible += 7;
    }
    // The configured mentions, as text mentions of the user id.
    let users: Vec<u64> = msg.mentions.iter().filter_map(|m| mention_user(m)).collect();
    if !users.is_empty() && visible + 4 + users.len() * (MENTION_LABEL.len() + 1) <= MAX_TEXT {
        let links: Vec<String> = users
            .iter()
            .map(|id| format!("<a href=\"tg://user?id={id}\">{MENTION_LABEL}</a>"))
            .collect();
        out.push_str(&format!("\ncc {}", links.join(" ")));
    }
    out
}

/// Visible length of our HTML: tags removed, entities counted as one.
pub fn visible_len(html: &str) -> usize {
    let mut n = 0;
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
            }
            '&' => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
                n += 1;
            }
            _ => n += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::{MessageKind, Severity};

    #[test]
    fn configured_users_are_text_mentions_and_event_text_mentions_no_one() {
        assert_eq!(mention_user("tg://user?id=4242"), Some(4242));
        for bad in [
            "@ana",
            "tg://user?id=",
            "tg://user?id=12a",
            "tg://resolve?domain=ana",
        ] {
            assert_eq!(mention_user(bad), None, "{bad}");
        }
        let mut m = msg("ping @admin now");
        m.mentions = vec!["tg://user?id=4242".into(), "@nope".into()];
        let html = html(&m);
        assert!(
            html.ends_with("\ncc <a href=\"tg://user?id=4242\">on call</a>"),
            "{html}"
        );
        assert!(html.contains("@\u{2060}admin"), "{html}");
        assert!(!html.contains("@nope"), "{html}");
    }

    fn msg(body: &str) -> Outbound {
        Outbound {
            kind: MessageKind::Terminal,
            title: "w<1> · t&2".into(),
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
    fn event_text_renders_literally() {
        let h = html(&msg("<b>bold</b> & \"quoted\""));
        assert!(h.starts_with("<b>"), "{h}");
        assert!(h.contains("w&lt;1&gt; · t&amp;2"), "{h}");
        assert!(
            h.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"),
            "{h}"
        );
        assert_eq!(h.matches("<b>").count(), 1);
    }

    #[test]
    fn ten_thousand_characters_fit_after_entity_parsing() {
        let h = html(&msg(&"<&".repeat(5000)));
        let n = visible_len(&h);
        assert!(n <= MAX_TEXT && n > MAX_TEXT - 20, "{n}");
        assert!(h.ends_with('…'), "{}", &h[h.len() - 20..]);
    }

    #[test]
    fn a_link_is_herald_s_own_anchor_with_its_url_escaped() {
        let mut m = msg("body");
        m.link = Some("https://grafana.example/d/x?a=1&b=\"2\"".into());
        let h = html(&m);
        assert!(
            h.ends_with("\n<a href=\"https://grafana.example/d/x?a=1&amp;b=&quot;2&quot;\">source</a>"),
            "{h}"
        );
        assert_eq!(h.matches("<a ").count(), 1);
    }

    #[test]
    fn an_acknowledge_token_is_a_callback_button_within_64_bytes() {
        let mut m = msg("x");
        assert!(keyboard(&m).is_none());
        m.acknowledge = Some("ack:hr0123456789abcdef0123".into());
        let markup = serde_json::to_value(keyboard(&m).expect("a keyboard")).expect("json");
        assert_eq!(
            markup["inline_keyboard"][0][0]["callback_data"],
            "ack:hr0123456789abcdef0123"
        );
        m.acknowledge = Some("a".repeat(65));
        assert!(
            keyboard(&m).is_none(),
            "Telegram refuses callback_data past 64 bytes"
        );
    }
}
