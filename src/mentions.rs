//! Who a failure pings (SPEC §5.4, §6.12): `mention_on_failure` of a chat
//! channel, and of every route that sends the task there. Mentions are
//! written in the platform's own syntax and checked at config load by the
//! adapter crate that renders them; the renderers send nothing else
//! unescaped, so text from events still pings no one. They go on failure
//! and attention notifications only (`render::pings_someone`).

use std::sync::{Arc, PoisonError, RwLock};

use herald_messaging::Platform;

use crate::routing::{Router, RoutingInput};
use crate::store::ClaimedReceipt;

/// The platform a mention is written for, if it is one herald can send:
/// Slack `<@U…>`, `<@W…>`, `<!subteam^S…>`, `<!here>`, `<!channel>`;
/// Discord `<@id>`, `<@!id>`, `<@&role>`; Telegram `tg://user?id=…`.
pub fn platform_of(raw: &str) -> Option<Platform> {
    if herald_slack::render::is_mention(raw) {
        Some(Platform::Slack)
    } else if herald_discord::render::Mention::parse(raw).is_some() {
        Some(Platform::Discord)
    } else if herald_telegram::render::mention_user(raw).is_some() {
        Some(Platform::Telegram)
    } else {
        None
    }
}

/// The route table the running config routes by, shared with the channel
/// actors and replaced on every reload.
#[derive(Debug, Clone, Default)]
pub struct SharedRouter(Arc<RwLock<Arc<Router>>>);

impl SharedRouter {
    /// The table as it is now.
    pub fn current(&self) -> Arc<Router> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Route by `router` from now on.
    pub fn replace(&self, router: Router) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(router);
    }
}

/// One channel's mention rules.
#[derive(Debug, Clone)]
pub struct ChannelMentions {
    /// The channel's name.
    pub channel: String,
    /// Its platform: a route's mentions of another platform are not its.
    pub platform: Platform,
    /// Its own `mention_on_failure`.
    pub own: Vec<String>,
    /// The routes, for theirs.
    pub routes: SharedRouter,
}

impl ChannelMentions {
    /// Who a notification about `input` on this channel pings: the
    /// channel's mentions, then those of the routes that send the task
    /// here, each once.
    pub fn for_task(&self, input: &RoutingInput<'_>) -> Vec<String> {
        merged(
            &self.own,
            &self.routes.current(),
            input,
            &self.channel,
            self.platform,
        )
    }

    /// Who a receipt's notification pings: no one on a platform without
    /// mentions or for a notification that asks for no one (so webhook
    /// deliveries never walk the route table).
    pub fn for_receipt(&self, receipt: &ClaimedReceipt) -> Vec<String> {
        let chat = matches!(
            self.platform,
            Platform::Slack | Platform::Discord | Platform::Telegram
        );
        if !chat || !crate::render::wants_acknowledgement(&receipt.event) {
            return Vec::new();
        }
        self.for_task(&receipt_input(receipt))
    }
}

/// The routing input of a receipt's task (as of its event).
pub fn receipt_input(receipt: &ClaimedReceipt) -> RoutingInput<'_> {
    RoutingInput {
        run_id: &receipt.run_id,
        worker_id: &receipt.worker_id,
        task_id: &receipt.task_id,
        state: receipt.event.state.name(),
        labels: &receipt.labels,
    }
}

/// A channel's own mentions, then its routes' of its platform, each once.
pub fn merged(
    own: &[String],
    router: &Router,
    input: &RoutingInput<'_>,
    channel: &str,
    platform: Platform,
) -> Vec<String> {
    let mut out: Vec<String> = own.to_vec();
    for m in router.mentions_for(input, channel) {
        if platform_of(&m) == Some(platform) && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}
