//! The one rule of who may see an update: a public update is visible to everyone; a private one
//! only to a caller whose token grants reading one of its topics.
//!
//! What a token grants is a [`SelectorSet`] whatever the protocol: a 0.x token's
//! `mercure.subscribe` selectors (exact topics, `*`, URI templates), or a Mercure 1.0 access
//! token's `subscribe` grants (exact topics, `*`, URL Patterns resolved against the hub's URL;
//! see `http::mercure1::private_access`). So a 0.x and a 1.0 identity are judged by the same
//! function.
//!
//! Live fan-out, replay, the cursors a subscriber is told (`Last-Event-ID`,
//! `Mercure-Last-Event-ID`, `herald-gap`, the subscriptions API's cursor), and the JSON views
//! (`/topics`, `/topics/{topic}/events`) all ask this module, so no path can reveal a private
//! update, or its id, that another path would hide. Pure code.

use crate::topic::SelectorSet;
use crate::update::Update;

/// May a caller whose token allows private updates on `private_access` (`None`: public updates
/// only) see `update` at all (its id, its topics, its data)?
pub(crate) fn may_see(private_access: Option<&SelectorSet>, update: &Update) -> bool {
    !update.private || private_access.is_some_and(|claim| claim.matches_any(&update.topics))
}

/// Is `update` in the subscription-event format of this subscriber's protocol? The hub
/// publishes every subscription twice (see [`crate::subscriptions`]); a 0.x subscriber gets
/// only the JSON-LD events, a Mercure 1.0 subscriber only the 1.0 ones (type `mercure`).
/// Every other update is in every format.
pub(crate) fn in_subscription_format(mercure1: bool, update: &Update) -> bool {
    if !update.private {
        return true;
    }
    let Some(rest) = update
        .topic()
        .strip_prefix(crate::subscriptions::BASE)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return true;
    };
    let v1_event = update.event_type.as_deref() == Some(crate::subscriptions::EVENT_TYPE_V1);
    let v0_event = update.event_type.is_none() && rest.split('/').count() == 2;
    !(v1_event && !mercure1 || v0_event && mercure1)
}

/// May such a caller see updates of `topic` that are private? True when the claim matches
/// `topic` itself: then every update that carries `topic` is visible to it.
pub(crate) fn may_see_private_topic(private_access: Option<&SelectorSet>, topic: &str) -> bool {
    private_access.is_some_and(|claim| claim.matches(topic))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::update::Draft;

    fn update(topics: &[&str], private: bool) -> Update {
        Update::from_draft(Draft {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            private,
            ..Draft::default()
        })
        .unwrap()
    }

    #[test]
    fn public_updates_are_visible_to_everyone() {
        assert!(may_see(None, &update(&["a"], false)));
        assert!(may_see(
            Some(&SelectorSet::parse(["b"])),
            &update(&["a"], false)
        ));
    }

    #[test]
    fn private_updates_need_a_claim_on_one_of_their_topics() {
        let private = update(&["users/7/inbox", "alt"], true);
        assert!(!may_see(None, &private));
        assert!(!may_see(
            Some(&SelectorSet::parse(["public/{x}"])),
            &private
        ));
        assert!(may_see(
            Some(&SelectorSet::parse(["users/{id}/inbox"])),
            &private
        ));
        assert!(may_see(Some(&SelectorSet::parse(["alt"])), &private));
        assert!(may_see(Some(&SelectorSet::parse(["*"])), &private));
        assert!(may_see_private_topic(
            Some(&SelectorSet::parse(["users/{id}/inbox"])),
            "users/7/inbox"
        ));
        assert!(!may_see_private_topic(None, "users/7/inbox"));
    }

    #[test]
    fn each_protocol_gets_subscription_events_in_its_own_format() {
        let mut v1 = update(
            &["/.well-known/mercure/subscriptions/exact/a/urn%3Ax"],
            true,
        );
        v1.event_type = Some("mercure".into());
        let v0 = update(&["/.well-known/mercure/subscriptions/a/urn%3Ax"], true);
        let other = update(&["/.well-known/mercure/subscriptions/a/urn%3Ax"], false);
        assert!(in_subscription_format(true, &v1) && !in_subscription_format(false, &v1));
        assert!(in_subscription_format(false, &v0) && !in_subscription_format(true, &v0));
        assert!(in_subscription_format(true, &other) && in_subscription_format(false, &other));
        let elsewhere = update(&["books/1"], true);
        assert!(in_subscription_format(true, &elsewhere));
    }

    #[test]
    fn mercure_1_grants_are_judged_by_the_same_rule() {
        use crate::topic::Selector;
        let hub = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
        let private = update(&["https://example.com/users/7", "/alt/1"], true);
        let pattern = SelectorSet::from_selectors([Selector::url_pattern(
            "https://example.com/users/:id",
            &hub,
        )
        .unwrap()]);
        assert!(may_see(Some(&pattern), &private));
        // A relative grant resolves against the hub, as the relative alternate topic does.
        let relative =
            SelectorSet::from_selectors([Selector::url_pattern("/alt/:n", &hub).unwrap()]);
        assert!(may_see(Some(&relative), &private));
        // Exact grants are byte for byte: no template expansion, no normalization.
        let exact =
            SelectorSet::from_selectors([Selector::exact("https://example.com/users/{id}")]);
        assert!(!may_see(Some(&exact), &private));
        let exact = SelectorSet::from_selectors([Selector::exact("https://example.com/users/7")]);
        assert!(may_see(Some(&exact), &private));
        assert!(may_see(
            Some(&SelectorSet::from_selectors([Selector::exact("*")])),
            &private
        ));
        let other = SelectorSet::from_selectors([Selector::url_pattern("/books/*", &hub).unwrap()]);
        assert!(!may_see(Some(&other), &private));
        assert!(!may_see_private_topic(
            Some(&other),
            "https://example.com/users/7"
        ));
    }
}
