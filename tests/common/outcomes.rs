//! Helpers for the adapter tests: a sample message and outcome unwrapping.

use herald_messaging::{
    DeliveryOutcome, Field, IdempotencyKey, MessageKind, NotSurfaced, Outbound, Severity,
};

/// A completed-task message with `body` and an optional idempotency key.
pub fn outbound(kind: MessageKind, body: &str, key: Option<&str>) -> Outbound {
    Outbound {
        kind,
        title: "worker-a · task-1".into(),
        state: "completed".into(),
        severity: Severity::Success,
        fields: vec![Field {
            name: "run".into(),
            value: "nightly-7".into(),
        }],
        body: Some(body.into()),
        idempotency_key: key.map(|k| IdempotencyKey(k.into())),
        subject: None,
        link: None,
        acknowledge: None,
        mentions: Vec::new(),
    }
}

/// The message id of a surfaced outcome; panics otherwise.
pub fn surfaced(outcome: &DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Surfaced(h) => h.0.clone(),
        other => panic!("expected Surfaced, got {other:?}"),
    }
}

/// The reason of an outcome that did not surface; panics otherwise.
pub fn not_surfaced(outcome: DeliveryOutcome) -> NotSurfaced {
    match outcome {
        DeliveryOutcome::NotSurfaced(r) => r,
        other => panic!("expected NotSurfaced, got {other:?}"),
    }
}
