//! The per-topic tallies of the redb store (`GET /topics`), kept in memory.
//!
//! They are derived from the log: counted from it when the file is opened, then moved by each
//! committed append (its updates counted in, what its retention removed counted out). Keeping
//! them out of the file saves each append a write to a random page of a per-topic table (two,
//! with the public tally, and as many again for what retention removes), which was most of the
//! disk work of a publish to many topics.

use std::collections::HashMap;

use super::super::TopicHistory;
use super::unique;

/// What one topic's kept updates add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    events: u64,
    last_event_id: String,
    public_events: u64,
    last_public_event_id: Option<String>,
}

/// One tally per topic with history, private and public updates apart.
#[derive(Debug, Default)]
pub(super) struct TopicTallies {
    topics: HashMap<String, Tally>,
}

impl TopicTallies {
    /// Counts an update in, once per distinct topic: it becomes each topic's newest.
    pub(super) fn add<T: AsRef<str> + PartialEq>(&mut self, id: &str, topics: &[T], private: bool) {
        for topic in unique(topics) {
            let tally = match self.topics.get_mut(topic.as_ref()) {
                Some(tally) => tally,
                None => self.topics.entry(topic.as_ref().to_owned()).or_default(),
            };
            tally.events += 1;
            tally.last_event_id.replace_range(.., id);
            if !private {
                tally.public_events += 1;
                match &mut tally.last_public_event_id {
                    Some(last) => last.replace_range(.., id),
                    None => tally.last_public_event_id = Some(id.to_owned()),
                }
            }
        }
    }

    /// Counts a removed update out. Its topics' newest ids stay: retention removes the oldest
    /// first, so a tally's newest update goes only with its last one, and then the tally goes.
    pub(super) fn remove<T: AsRef<str> + PartialEq>(&mut self, topics: &[T], private: bool) {
        for topic in unique(topics) {
            let Some(tally) = self.topics.get_mut(topic.as_ref()) else {
                continue;
            };
            tally.events = tally.events.saturating_sub(1);
            if !private {
                tally.public_events = tally.public_events.saturating_sub(1);
                if tally.public_events == 0 {
                    tally.last_public_event_id = None;
                }
            }
            if tally.events == 0 {
                self.topics.remove(topic.as_ref());
            }
        }
    }

    /// One summary per topic, less what `aged_out` (topic -> (updates, public updates)) says
    /// has aged out but is still counted; a topic left with nothing is not shown.
    pub(super) fn summaries(&self, aged_out: &HashMap<String, (u64, u64)>) -> Vec<TopicHistory> {
        self.topics
            .iter()
            .filter_map(|(topic, tally)| {
                let (aged, aged_public) = aged_out.get(topic).copied().unwrap_or((0, 0));
                let events = tally.events.saturating_sub(aged);
                if events == 0 {
                    return None;
                }
                let public_events = tally.public_events.saturating_sub(aged_public);
                Some(TopicHistory {
                    topic: topic.clone(),
                    events,
                    last_event_id: tally.last_event_id.clone(),
                    public_events,
                    last_public_event_id: tally
                        .last_public_event_id
                        .clone()
                        .filter(|_| public_events > 0),
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn row(tallies: &TopicTallies, topic: &str) -> Option<(u64, String, u64, Option<String>)> {
        tallies.topics.get(topic).map(|t| {
            (
                t.events,
                t.last_event_id.clone(),
                t.public_events,
                t.last_public_event_id.clone(),
            )
        })
    }

    #[test]
    fn a_topic_named_twice_counts_once_and_goes_with_its_last_update() {
        let mut tallies = TopicTallies::default();
        tallies.add("1", &["a", "a", "b"], false);
        tallies.add("2", &["a"], true);
        assert_eq!(
            row(&tallies, "a"),
            Some((2, "2".into(), 1, Some("1".into())))
        );
        assert_eq!(
            row(&tallies, "b"),
            Some((1, "1".into(), 1, Some("1".into())))
        );
        tallies.remove(&["a", "a", "b"], false);
        assert_eq!(row(&tallies, "a"), Some((1, "2".into(), 0, None)));
        assert_eq!(row(&tallies, "b"), None);
        tallies.remove(&["a"], true);
        assert!(tallies.topics.is_empty());
    }

    #[test]
    fn aged_out_updates_are_subtracted_from_the_summaries() {
        let mut tallies = TopicTallies::default();
        tallies.add("1", &["a"], false);
        tallies.add("2", &["a"], true);
        tallies.add("3", &["b"], false);
        let aged = HashMap::from([("a".to_owned(), (1, 1)), ("b".to_owned(), (1, 1))]);
        let summaries = tallies.summaries(&aged);
        assert_eq!(
            summaries,
            [TopicHistory {
                topic: "a".into(),
                events: 1,
                last_event_id: "2".into(),
                public_events: 0,
                last_public_event_id: None,
            }]
        );
    }
}
