//! Outbound → Discord message: a one-line `content` (what notifications
//! show) plus an embed coloured by severity, every piece of event text
//! escaped and cut to Discord's limits.

use herald_messaging::{MessageKind, Outbound, Severity, truncate_chars};
use serenity::builder::{
    CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed, CreateEmbedFooter,
    CreateInteractionResponse, CreateInteractionResponseMessage, CreateMessage, CreateThread, EditMessage,
};
use serenity::model::application::ButtonStyle;
use serenity::model::channel::AutoArchiveDuration;
use serenity::model::channel::Nonce;
use serenity::model::id::{RoleId, UserId};

/// `content` limit.
pub const MAX_CONTENT: usize = 2000;
/// Embed title limit.
pub const MAX_EMBED_TITLE: usize = 256;
/// Embed description limit.
pub const MAX_EMBED_DESCRIPTION: usize = 4096;
/// Embed fields per embed.
pub const MAX_EMBED_FIELDS: usize = 25;
/// Embed field name limit.
pub const MAX_FIELD_NAME: usize = 256;
/// Embed field value limit.
pub const MAX_FIELD_VALUE: usize = 1024;
/// Sum of all text in one embed.
pub const MAX_EMBED_TOTAL: usize = 6000;
/// Footer text limit.
const FOOTER_BUDGET: usize = 64;

/// Escape Discord markdown and neutralise mentions in event text, so a
/// summary can neither ping (`@everyone`, `<@id>`) nor restyle the message.
/// `allowed_mentions: {"parse": []}` already stops pings; the zero-width
/// space also keeps the text from *looking* like a mention.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            '<' => out.push_str("<\u{200B}"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape, then cut to `max` characters without splitting an escape.
fn escaped(text: &str, max: usize) -> String {
    escaped_line(&escape(text), max)
}

fn colour(severity: Severity) -> u32 {
    match severity {
        Severity::Progress => 0x4A7FD8,
        Severity::Attention => 0xE0A100,
        Severity::Success => 0x2E9D57,
        Severity::Failure => 0xDD3333,
        Severity::Neutral => 0x888899,
    }
}

/// A Discord mention as a config may name one: a user (`<@id>`,
/// `<@!id>`) or a role (`<@&id>`), by snowflake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mention {
    /// A user.
    User(u64),
    /// A role.
    Role(u64),
}

impl Mention {
    /// Read `<@id>`, `<@!id>` or `<@&id>`; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Mention> {
        let inner = raw.strip_prefix("<@")?.strip_suffix('>')?;
        let (role, id) = match inner.strip_prefix('&') {
            Some(id) => (true, id),
            None => (false, inner.strip_prefix('!').unwrap_or(inner)),
        };
        if id.is_empty() || id.len() > 20 || !id.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let id: u64 = id.parse().ok()?;
        Some(if role {
            Mention::Role(id)
        } else {
            Mention::User(id)
        })
    }

    fn markup(self) -> String {
        match self {
            Mention::User(id) => format!("<@{id}>"),
            Mention::Role(id) => format!("<@&{id}>"),
        }
    }
}

fn mentions(msg: &Outbound) -> Vec<Mention> {
    msg.mentions.iter().filter_map(|m| Mention::parse(m)).collect()
}

/// The one-line `content`: emoji, task, state (and the summary for a
/// terminal notification, which is what a phone notification shows), then
/// the configured mentions.
pub fn content(msg: &Outbound) -> String {
    let tail: Vec<String> = mentions(msg).into_iter().map(Mention::markup).collect();
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("\n{}", tail.join(" "))
    };
    let mut line = format!(
        "{} **{}** — {}",
        msg.severity.emoji(),
        escape(&msg.title),
        escape(&msg.state)
    );
    if let (MessageKind::Terminal, Some(body)) = (msg.kind, &msg.body) {
        line.push_str(": ");
        line.push_str(&escape(body));
    }
    // Cut the whole line; its escapes were applied before the cut, so only
    // a trailing lone backslash needs care.
    let room = MAX_CONTENT - tail.chars().count();
    format!("{}{tail}", escaped_line(&line, room))
}

/// Cut already-escaped text to `max` characters; a cut right after a lone
/// backslash would escape the ellipsis, so that backslash goes too.
fn escaped_line(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut = truncate_chars(line, max);
    if cut.ends_with("\\…") && !cut.ends_with("\\\\…") {
        return format!("{}…", cut.trim_end_matches('…').trim_end_matches('\\'));
    }
    cut
}

/// The embed: title, description (summary/reason), inline fields, footer,
/// all within Discord's per-part and total limits.
pub fn embed(msg: &Outbound) -> CreateEmbed {
    let title = escaped(&format!("{} — {}", msg.title, msg.state), MAX_EMBED_TITLE);
    let footer = match msg.kind {
        MessageKind::Progress => "live · herald",
        MessageKind::Terminal => "herald",
    };
    let mut budget = MAX_EMBED_TOTAL.saturating_sub(title.chars().count() + FOOTER_BUDGET);
    let mut fields = Vec::new();
    for f in msg.fields.iter().take(MAX_EMBED_FIELDS) {
        let name = escaped(&f.name, MAX_FIELD_NAME);
        let value = escaped(if f.value.is_empty() { "—" } else { &f.value }, MAX_FIELD_VALUE);
        let cost = name.chars().count() + value.chars().count();
        if cost > budget {
            break;
        }
        budget -= cost;
        fields.push((name, value, true));
    }
    let mut embed = CreateEmbed::new()
        .title(title)
        .colour(colour(msg.severity))
        .fields(fields)
        .footer(CreateEmbedFooter::new(footer));
    if let Some(body) = &msg.body {
        embed = embed.description(escaped(body, MAX_EMBED_DESCRIPTION.min(budget)));
    }
    // The title links to where to look (Discord takes any http(s) URL).
    if let Some(link) = &msg.link {
        embed = embed.url(link);
    }
    embed
}

/// No mention in the message may ping anyone (edits, and anything not
/// configured).
fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// On a new message, exactly the configured users and roles may be pinged;
/// nothing is parsed from the text.
fn configured_pings(msg: &Outbound) -> CreateAllowedMentions {
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    for m in mentions(msg) {
        match m {
            Mention::User(id) => users.push(UserId::new(id)),
            Mention::Role(id) => roles.push(RoleId::new(id)),
        }
    }
    CreateAllowedMentions::new().users(users).roles(roles)
}

/// The message's buttons: Acknowledge, where the notification asks for
/// someone (its token is the button's `custom_id`, at most 100 characters).
fn buttons(msg: &Outbound) -> Vec<CreateActionRow> {
    msg.acknowledge
        .iter()
        .filter(|token| token.chars().count() <= 100)
        .map(|token| {
            CreateActionRow::Buttons(vec![
                CreateButton::new(token.clone())
                    .label("Acknowledge")
                    .style(ButtonStyle::Primary),
            ])
        })
        .collect()
}

/// The create request; a terminal notification carries its idempotency key
/// as `nonce` with `enforce_nonce`, so a resend returns the first message.
pub fn create(msg: &Outbound) -> CreateMessage {
    let mut create = CreateMessage::new()
        .content(content(msg))
        .embed(embed(msg))
        .allowed_mentions(configured_pings(msg));
    let buttons = buttons(msg);
    if !buttons.is_empty() {
        create = create.components(buttons);
    }
    if let Some(key) = &msg.idempotency_key {
        let nonce: String = key.0.chars().take(25).collect();
        create = create.nonce(Nonce::String(nonce)).enforce_nonce(true);
    }
    create
}

/// The request that opens a task's thread from its live message: named
/// after the task (cut to Discord's 100 characters; thread names are
/// plain text), archived after a day without messages (a message in it
/// brings it back).
pub fn thread(name: &str) -> CreateThread<'static> {
    let name = truncate_chars(name.trim(), crate::MAX_THREAD_NAME);
    let name = if name.is_empty() {
        "herald".to_owned()
    } else {
        name
    };
    CreateThread::new(name).auto_archive_duration(AutoArchiveDuration::OneDay)
}

/// The edit request (progress messages).
pub fn edit(msg: &Outbound) -> EditMessage {
    EditMessage::new()
        .content(content(msg))
        .embed(embed(msg))
        .allowed_mentions(no_pings())
}

/// The answer to a button press that edits the pressed message in place
/// (`UPDATE_MESSAGE`, type 7): its new rendering, with exactly the buttons
/// `msg` carries (none once acknowledged), and no mention parsed.
pub fn update_interaction(msg: &Outbound) -> Result<serde_json::Value, serde_json::Error> {
    let data = CreateInteractionResponseMessage::new()
        .content(content(msg))
        .embed(embed(msg))
        .components(buttons(msg))
        .allowed_mentions(no_pings());
    serde_json::to_value(CreateInteractionResponse::UpdateMessage(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messaging::Field;
    use serde_json::Value;

    #[test]
    fn configured_mentions_ping_exactly_those_users_and_roles_on_create_only() {
        assert_eq!(Mention::parse("<@123>"), Some(Mention::User(123)));
        assert_eq!(Mention::parse("<@!123>"), Some(Mention::User(123)));
        assert_eq!(Mention::parse("<@&456>"), Some(Mention::Role(456)));
        for bad in ["@everyone", "<@x1>", "<@>", "<#123>", "<@123> ", "123"] {
            assert_eq!(Mention::parse(bad), None, "{bad}");
        }
        let mut m = msg("boom <@999>");
        m.mentions = vec!["<@123>".into(), "<@&456>".into()];
        let v = serde_json::to_value(create(&m)).unwrap();
        assert!(
            v["content"].as_str().unwrap().ends_with("\n<@123> <@&456>"),
            "{v}"
        );
        assert_eq!(v["allowed_mentions"]["users"], serde_json::json!(["123"]));
        assert_eq!(v["allowed_mentions"]["roles"], serde_json::json!(["456"]));
        assert!(
            v["allowed_mentions"]["parse"]
                .as_array()
                .is_none_or(|p| p.is_empty()),
            "{v}"
        );
        let e = serde_json::to_value(edit(&m)).unwrap();
        assert!(
            e["allowed_mentions"]["users"]
                .as_array()
                .is_none_or(|u| u.is_empty()),
            "{e}"
        );
    }

    fn msg(body: &str) -> Outbound {
        Outbound {
            kind: MessageKind::Terminal,
            title: "worker_1 · task*2".into(),
            state: "failed".into(),
            severity: Severity::Failure,
            fields: vec![Field {
                name: "run".into(),
                value: "nightly-7".into(),
            }],
            body: Some(body.into()),
            idempotency_key: Some(herald_messaging::IdempotencyKey("hr0123456789abcdef0123".into())),
            subject: None,
            link: None,
            acknowledge: None,
            mentions: Vec::new(),
        }
    }

    #[test]
    fn a_thread_is_named_after_the_task_within_discords_100_characters() {
        let body = serde_json::to_value(thread("  w · tsk001  ")).unwrap();
        assert_eq!(body["name"], "w · tsk001");
        assert_eq!(body["auto_archive_duration"], 1440);
        let long = serde_json::to_value(thread(&"x".repeat(300))).unwrap();
        assert_eq!(long["name"].as_str().unwrap().chars().count(), 100);
        let empty = serde_json::to_value(thread("   ")).unwrap();
        assert_eq!(empty["name"], "herald");
    }

    #[test]
    fn mentions_and_markdown_are_neutralised() {
        let c = content(&msg("@everyone look at **this** <@123>"));
        assert!(!c.contains("@everyone"), "{c}");
        assert!(!c.contains("<@123>"), "{c}");
        assert!(c.contains("\\*\\*this\\*\\*"), "{c}");
        assert!(c.contains("worker\\_1"), "{c}");
    }

    #[test]
    fn create_carries_nonce_enforce_and_no_pings() {
        let v: Value = serde_json::to_value(create(&msg("x"))).unwrap();
        assert_eq!(v["nonce"], "hr0123456789abcdef0123");
        assert_eq!(v["enforce_nonce"], true);
        assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
        let e: Value = serde_json::to_value(edit(&msg("x"))).unwrap();
        assert_eq!(e["allowed_mentions"]["parse"], serde_json::json!([]));
    }

    #[test]
    fn long_text_is_cut_within_limits() {
        let huge = "ab*".repeat(5000);
        let c = content(&msg(&huge));
        let n = c.chars().count();
        assert!((MAX_CONTENT - 1..=MAX_CONTENT).contains(&n), "{n}");
        assert!(c.ends_with('…'));
        let v: Value = serde_json::to_value(embed(&msg(&huge))).unwrap();
        let desc = v["description"].as_str().unwrap();
        assert!(desc.chars().count() <= MAX_EMBED_DESCRIPTION);
        assert!(desc.ends_with('…'), "the cut is visible");
        // Discord counts every text of an embed towards its 6,000 limit.
        let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        let fields: usize = v["fields"]
            .as_array()
            .map(|fs| fs.iter().map(|f| chars(&f["name"]) + chars(&f["value"])).sum())
            .unwrap_or(0);
        let total = chars(&v["title"]) + chars(&v["description"]) + chars(&v["footer"]["text"]) + fields;
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
        assert!(
            total > MAX_EMBED_DESCRIPTION,
            "the description used its whole budget: {total}"
        );
    }

    #[test]
    fn many_long_fields_keep_the_embed_within_its_total() {
        let mut m = msg(&"d".repeat(5000));
        m.fields = (0..40)
            .map(|i| Field {
                name: format!("{i}{}", "n".repeat(300)),
                value: "v".repeat(2000),
            })
            .collect();
        let v: Value = serde_json::to_value(embed(&m)).unwrap();
        let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        let fields = v["fields"].as_array().cloned().unwrap_or_default();
        assert!(fields.len() <= 25, "{}", fields.len());
        let field_chars: usize = fields
            .iter()
            .map(|f| chars(&f["name"]) + chars(&f["value"]))
            .sum();
        let total = chars(&v["title"]) + chars(&v["description"]) + chars(&v["footer"]["text"]) + field_chars;
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
        for f in &fields {
            assert!(chars(&f["name"]) <= 256 && chars(&f["value"]) <= 1024, "{f}");
        }
    }
}
