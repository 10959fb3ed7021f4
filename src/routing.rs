//! Route matching (SPEC §5.2): which channels an event goes to.
//!
//! Routes are tried in order; a route matches when all its matchers match;
//! `continue = false` stops at the first match. No match falls back to the
//! `[defaults]` channels. Matchers are compiled once, at config load.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

/// A field of an event that a route can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchField {
    /// `run_id`
    RunId,
    /// `worker_id`
    WorkerId,
    /// `task_id`
    TaskId,
    /// `state`
    State,
    /// `labels.<name>`: from `extra.labels`, merged over the task's life.
    Label(String),
}

impl MatchField {
    /// Parse a matcher key as written in config.
    pub fn parse(key: &str) -> Result<Self, String> {
        match key {
            "run_id" => Ok(MatchField::RunId),
            "worker_id" => Ok(MatchField::WorkerId),
            "task_id" => Ok(MatchField::TaskId),
            "state" => Ok(MatchField::State),
            _ => match key.strip_prefix("labels.") {
                Some(name) if !name.is_empty() => Ok(MatchField::Label(name.to_owned())),
                _ => Err(format!(
                    "unknown match field {key:?} (expected run_id, worker_id, task_id, state or labels.<name>)"
                )),
            },
        }
    }
}

/// One way to match a value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The whole value, exactly.
    Exact(String),
    /// A glob with `*` (matching any run of characters, `/` included).
    Glob(GlobMatcher),
    /// A regular expression, written `"~^re$"`.
    Regex(Regex),
    /// Any of several matchers (a TOML list).
    AnyOf(Vec<Matcher>),
}

impl Matcher {
    /// Compile one pattern: `~` starts a regex, a `*` makes a glob, anything
    /// else is exact. Only `*` is special in a glob; other glob syntax is
    /// taken literally, because ids commonly contain `?` and brackets.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(re) = pattern.strip_prefix('~') {
            return Regex::new(re)
                .map(Matcher::Regex)
                .map_err(|e| format!("bad regex {re:?}: {e}"));
        }
        if pattern.contains('*') {
            let escaped: String = pattern
                .split('*')
                .map(globset::escape)
                .collect::<Vec<_>>()
                .join("*");
            return GlobBuilder::new(&escaped)
                .backslash_escape(false)
                .literal_separator(false)
                .build()
                .map(|g| Matcher::Glob(g.compile_matcher()))
                .map_err(|e| format!("bad glob {pattern:?}: {e}"));
        }
        Ok(Matcher::Exact(pattern.to_owned()))
    }

    /// Compile a list of patterns into an any-of matcher.
    pub fn any_of(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Err("an empty list matches nothing".into());
        }
        patterns
            .iter()
            .map(|p| Matcher::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map(Matcher::AnyOf)
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Glob(g) => g.is_match(value),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::AnyOf(all) => all.iter().any(|m| m.matches(value)),
        }
    }

    /// The exact strings this matcher names (for checking state names).
    pub fn exact_values(&self) -> Vec<&str> {
        match self {
            Matcher::Exact(s) => vec![s.as_str()],
            Matcher::AnyOf(all) => all.iter().flat_map(Matcher::exact_values).collect(),
            Matcher::Glob(_) | Matcher::Regex(_) => Vec::new(),
        }
    }
}

/// One `[[routes]]` entry, compiled.
#[derive(Debug, Clone)]
pub struct Route {
    /// All must match.
    pub matchers: Vec<(MatchField, Matcher)>,
    /// Channel names (validated against `[channels]`).
    pub channels: Vec<String>,
    /// Keep trying later routes after this one matched.
    pub continue_: bool,
    /// `mention_on_failure`: who failures of the tasks it routes ping on
    /// its channels (each applies to the channels of its platform).
    pub mentions: Vec<String>,
}

/// The fields of an event that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RoutingInput<'a> {
    /// `run_id`
    pub run_id: &'a str,
    /// `worker_id`
    pub worker_id: &'a str,
    /// `task_id`
    pub task_id: &'a str,
    /// `state`
    pub state: &'a str,
    /// The task's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// Whether every matcher matches `input` (a route's, an escalation's).
pub fn all_match(matchers: &[(MatchField, Matcher)], input: &RoutingInput<'_>) -> bool {
    matchers.iter().all(|(field, matcher)| {
        let value = match field {
            MatchField::RunId => Some(input.run_id),
            MatchField::WorkerId => Some(input.worker_id),
            MatchField::TaskId => Some(input.task_id),
            MatchField::State => Some(input.state),
            MatchField::Label(name) => input.labels.get(name).map(String::as_str),
        };
        value.is_some_and(|v| matcher.matches(v))
    })
}

impl Route {
    fn matches(&self, input: &RoutingInput<'_>) -> bool {
        all_match(&self.matchers, input)
    }
}

/// The ordered route table plus the fallback channels.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    defaults: Vec<String>,
}

impl Router {
    /// Build from compiled routes and `[defaults] channels`.
    pub fn new(routes: Vec<Route>, defaults: Vec<String>) -> Self {
        Router { routes, defaults }
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when there are no routes (only defaults).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The mentions of the routes that send `input` to `channel`, in route
    /// order (the walk of [`Router::route`]; defaults have none).
    pub fn mentions_for(&self, input: &RoutingInput<'_>, channel: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for route in &self.routes {
            if route.matches(input) {
                if route.channels.iter().any(|c| c == channel) {
                    for m in &route.mentions {
                        if !out.contains(m) {
                            out.push(m.clone());
                        }
                    }
                }
                if !route.continue_ {
                    break;
                }
            }
        }
        out
    }

    /// The channels `input` goes to, each once, in route order. Empty means
    /// unrouted (journaled and counted, delivered nowhere).
    pub fn route(&self, input: &RoutingInput<'_>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for route in &self.routes {
            if route.matches(input) {
                matched = true;
                for ch in &route.channels {
                    if !out.contains(ch) {
                        out.push(ch.clone());
                    }
                }
                if !route.continue_ {
                    break;
                }
            }
        }
        if !matched {
            out = self.defaults.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input<'a>(run: &'a str, state: &'a str, labels: &'a BTreeMap<String, String>) -> RoutingInput<'a> {
        RoutingInput {
            run_id: run,
            worker_id: "w",
            task_id: "t",
            state,
            labels,
        }
    }

    fn route(matchers: Vec<(MatchField, Matcher)>, channels: &[&str], cont: bool) -> Route {
        Route {
            matchers,
            channels: channels.iter().map(|s| s.to_string()).collect(),
            continue_: cont,
            mentions: Vec::new(),
        }
    }

    #[test]
    fn mentions_come_from_the_matched_routes_that_list_the_channel() {
        let mut first = route(
            vec![(MatchField::RunId, Matcher::parse("r").unwrap())],
            &["a"],
            true,
        );
        first.mentions = vec!["<@1>".into()];
        let mut second = route(vec![], &["a", "b"], false);
        second.mentions = vec!["<@2>".into(), "<@1>".into()];
        let mut never = route(vec![], &["a"], false);
        never.mentions = vec!["<@3>".into()];
        let router = Router::new(vec![first, second, never], vec![]);
        let none = BTreeMap::new();
        assert_eq!(
            router.mentions_for(&input("r", "failed", &none), "a"),
            ["<@1>", "<@2>"]
        );
        assert_eq!(
            router.mentions_for(&input("r", "failed", &none), "b"),
            ["<@2>", "<@1>"]
        );
        assert_eq!(
            router.mentions_for(&input("x", "failed", &none), "a"),
            ["<@2>", "<@1>"]
        );
        assert!(router.mentions_for(&input("x", "failed", &none), "c").is_empty());
    }

    #[test]
    fn spec_example_routes() {
        let router = Router::new(
            vec![
                route(
                    vec![
                        (
                            MatchField::State,
                            Matcher::any_of(&["failed".into(), "cancelled".into()]).unwrap(),
                        ),
                        (MatchField::Label("team".into()), Matcher::parse("infra").unwrap()),
                    ],
                    &["ops"],
                    true,
                ),
                route(
                    vec![(MatchField::RunId, Matcher::parse("nightly-*").unwrap())],
                    &["builds", "audit"],
                    false,
                ),
            ],
            vec!["main".into()],
        );
        let infra: BTreeMap<_, _> = [("team".to_string(), "infra".to_string())].into();
        let none = BTreeMap::new();
        assert_eq!(
            router.route(&input("nightly-7", "failed", &infra)),
            ["ops", "builds", "audit"]
        );
        assert_eq!(
            router.route(&input("nightly-7", "running", &infra)),
            ["builds", "audit"]
        );
        assert_eq!(router.route(&input("adhoc", "failed", &infra)), ["ops"]);
        assert_eq!(router.route(&input("adhoc", "failed", &none)), ["main"]);
    }

    #[test]
    fn first_match_stops_without_continue() {
        let router = Router::new(
            vec![route(vec![], &["a"], false), route(vec![], &["b"], false)],
            vec![],
        );
        let none = BTreeMap::new();
        assert_eq!(router.route(&input("r", "queued", &none)), ["a"]);
    }

    #[test]
    fn regex_and_literal_glob_metachars() {
        let re = Matcher::parse("~^run-[0-9]+$").unwrap();
        assert!(re.matches("run-42"));
        assert!(!re.matches("run-x"));
        let glob = Matcher::parse("job[1]?\\x-*").unwrap();
        assert!(glob.matches("job[1]?\\x-abc"));
        assert!(!glob.matches("job1x-abc"));
        assert!(Matcher::parse("~(").is_err());
        assert!(MatchField::parse("labels.").is_err());
        assert!(MatchField::parse("colour").is_err());
    }

    proptest! {
        /// An exact matcher matches only its own string.
        #[test]
        fn exact_matches_only_itself(a in ".{0,12}", b in ".{0,12}") {
            prop_assume!(!a.starts_with('~') && !a.contains('*'));
            let m = Matcher::parse(&a).unwrap();
            prop_assert!(m.matches(&a));
            prop_assert_eq!(m.matches(&b), a == b);
        }

        /// `prefix*` matches exactly the strings that start with prefix,
        /// whatever characters the prefix holds.
        #[test]
        fn star_glob_is_prefix_match(prefix in "[^*~]{0,8}", rest in ".{0,8}", other in ".{0,16}") {
            let m = Matcher::parse(&format!("{prefix}*")).unwrap();
            let joined = format!("{prefix}{rest}");
            prop_assert!(m.matches(&joined));
            prop_assert_eq!(m.matches(&other), other.starts_with(&prefix));
        }

        /// `*infix*` is substring search.
        #[test]
        fn double_star_is_contains(infix in "[a-z/.?]{0,5}", hay in "[a-z/.?]{0,16}") {
            let m = Matcher::parse(&format!("*{infix}*")).unwrap();
            prop_assert_eq!(m.matches(&hay), hay.contains(&infix));
        }

        /// Any-of is the disjunction of its members.
        #[test]
        fn any_of_is_disjunction(items in proptest::collection::vec("[a-c]{1,3}\\*?", 1..4), v in "[a-c]{0,4}") {
            let any = Matcher::any_of(&items).unwrap();
            let each = items.iter().any(|p| Matcher::parse(p).unwrap().matches(&v));
            prop_assert_eq!(any.matches(&v), each);
        }

        /// Routing returns no duplicates, and an unmatched event goes to the
        /// defaults exactly.
        #[test]
        fn route_output_is_deduplicated(chs in proptest::collection::vec(proptest::collection::vec("[a-d]", 0..4), 0..5),
                                        conts in proptest::collection::vec(any::<bool>(), 5)) {
            let routes: Vec<Route> = chs.iter().enumerate().map(|(i, c)| Route {
                matchers: vec![(MatchField::State, Matcher::parse("running").unwrap())],
                channels: c.clone(),
                continue_: conts[i],
                mentions: Vec::new(),
            }).collect();
            let router = Router::new(routes, vec!["fallback".into()]);
            let none = BTreeMap::new();
            let out = router.route(&input("r", "running", &none));
            let mut sorted = out.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), out.len());
            let unmatched = router.route(&input("r", "queued", &none));
            prop_assert_eq!(unmatched, vec!["fallback".to_string()]);
        }
    }
}
