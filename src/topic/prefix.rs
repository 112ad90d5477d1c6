//! An index of values by literal prefix: given a topic, visit only the values whose prefix the
//! topic starts with.
//!
//! Pure code. The hub files every URI-template subscriber under its template's literal prefix
//! (the text before the first expression, `https://example.com/books/` for
//! `https://example.com/books/{id}`), so a topic only runs the matchers of templates that could
//! match it. It is a radix tree (edges labelled with byte strings, nodes in one arena): a lookup
//! walks the topic once, `O(topic length)` whatever the number of values, and allocates nothing.
//! Removing the last value of a node prunes it and merges pass-through nodes, so the tree never
//! holds more nodes than twice the number of distinct prefixes in use (plus the root).

/// Values filed by prefix. Several values may share one prefix.
#[derive(Debug)]
pub(crate) struct PrefixIndex<T> {
    nodes: Vec<Node<T>>,
    /// Arena slots free for reuse.
    free: Vec<usize>,
}

#[derive(Debug)]
struct Node<T> {
    /// The bytes of the edge from the parent to this node (empty for the root only).
    label: Box<[u8]>,
    /// Children, each label starting with a different byte.
    children: Vec<usize>,
    values: Vec<T>,
}

impl<T> Node<T> {
    fn new(label: Box<[u8]>) -> Node<T> {
        Node {
            label,
            children: Vec::new(),
            values: Vec::new(),
        }
    }
}

const ROOT: usize = 0;

impl<T> Default for PrefixIndex<T> {
    fn default() -> Self {
        PrefixIndex {
            nodes: vec![Node::new(Box::default())],
            free: Vec::new(),
        }
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<T> PrefixIndex<T> {
    fn alloc(&mut self, node: Node<T>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.nodes[slot] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    /// The child of `node` whose label starts with `byte`.
    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        self.nodes[node]
            .children
            .iter()
            .copied()
            .find(|&child| self.nodes[child].label.first() == Some(&byte))
    }

    /// The values filed under exactly `prefix`, created empty if needed.
    pub(crate) fn entry(&mut self, prefix: &[u8]) -> &mut Vec<T> {
        let mut node = ROOT;
        let mut rest = prefix;
        while let Some(&first) = rest.first() {
            let Some(child) = self.child(node, first) else {
                let leaf = self.alloc(Node::new(rest.into()));
                self.nodes[node].children.push(leaf);
                node = leaf;
                break;
            };
            let common = common_prefix_len(&self.nodes[child].label, rest);
            if common < self.nodes[child].label.len() {
                // Split the edge: `child` keeps the tail, a new node takes the common head.
                let label = std::mem::take(&mut self.nodes[child].label);
                self.nodes[child].label = label[common..].into();
                let middle = self.alloc(Node {
                    label: label[..common].into(),
                    children: vec![child],
                    values: Vec::new(),
                });
                for slot in &mut self.nodes[node].children {
                    if *slot == child {
                        *slot = middle;
                    }
                }
                node = middle;
            } else {
                node = child;
            }
            rest = &rest[common..];
        }
        &mut self.nodes[node].values
    }

    /// The path of nodes from the root to the node of exactly `prefix`, if there is one.
    fn path(&self, prefix: &[u8]) -> Option<Vec<usize>> {
        let mut path = vec![ROOT];
        let mut rest = prefix;
        let mut node = ROOT;
        while let Some(&first) = rest.first() {
            let child = self.child(node, first)?;
            rest = rest.strip_prefix(&*self.nodes[child].label)?;
            path.push(child);
            node = child;
        }
        Some(path)
    }

    /// The values filed under exactly `prefix`, if any.
    pub(crate) fn get_mut(&mut self, prefix: &[u8]) -> Option<&mut Vec<T>> {
        let node = *self.path(prefix)?.last()?;
        Some(&mut self.nodes[node].values)
    }

    /// Removes the node of `prefix` if it holds no value any more, and tidies around it: empty
    /// leaves go, and a node left with no value and one child is merged with that child.
    pub(crate) fn prune(&mut self, prefix: &[u8]) {
        let Some(mut path) = self.path(prefix) else {
            return;
        };
        while let Some(node) = path.pop() {
            if node == ROOT || !self.nodes[node].values.is_empty() {
                return;
            }
            let Some(&parent) = path.last() else { return };
            match self.nodes[node].children.len() {
                0 => {
                    self.nodes[parent].children.retain(|&child| child != node);
                    self.release(node);
                    // The parent may now be a pass-through node or an empty leaf.
                }
                1 => {
                    let child = self.nodes[node].children[0];
                    let tail = std::mem::take(&mut self.nodes[child].label);
                    let mut label = std::mem::take(&mut self.nodes[node].label).into_vec();
                    label.extend_from_slice(&tail);
                    self.nodes[child].label = label.into();
                    for slot in &mut self.nodes[parent].children {
                        if *slot == node {
                            *slot = child;
                        }
                    }
                    self.release(node);
                    return;
                }
                _ => return,
            }
        }
    }

    fn release(&mut self, node: usize) {
        self.nodes[node] = Node::new(Box::default());
        self.free.push(node);
    }

    /// Calls `visit` with the values of every prefix of `key` (the empty prefix included),
    /// shortest first.
    pub(crate) fn for_each_prefix_of<'a>(&'a self, key: &[u8], mut visit: impl FnMut(&'a T)) {
        let mut node = ROOT;
        let mut rest = key;
        loop {
            self.nodes[node].values.iter().for_each(&mut visit);
            let Some(&first) = rest.first() else { return };
            let Some(child) = self.child(node, first) else {
                return;
            };
            match rest.strip_prefix(&*self.nodes[child].label) {
                Some(tail) => {
                    rest = tail;
                    node = child;
                }
                None => return,
            }
        }
    }

    /// Calls `visit` with every value.
    #[cfg(test)]
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&T)) {
        // Free slots hold no values.
        for node in &self.nodes {
            node.values.iter().for_each(&mut visit);
        }
    }

    /// Nodes in use, the root included (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn visited(index: &PrefixIndex<String>, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        index.for_each_prefix_of(key.as_bytes(), |value| out.push(value.clone()));
        out
    }

    fn file(index: &mut PrefixIndex<String>, prefix: &str) {
        index.entry(prefix.as_bytes()).push(prefix.to_owned());
    }

    fn unfile(index: &mut PrefixIndex<String>, prefix: &str) {
        let values = index.get_mut(prefix.as_bytes()).unwrap();
        let at = values.iter().position(|v| v == prefix).unwrap();
        values.remove(at);
        index.prune(prefix.as_bytes());
    }

    #[test]
    fn a_key_visits_exactly_its_prefixes_shortest_first() {
        let mut index = PrefixIndex::default();
        for prefix in [
            "https://example.com/books/",
            "https://example.com/",
            "https://example.com/users/",
            "",
            "https://example.com/books/1",
            "http://other/",
        ] {
            file(&mut index, prefix);
        }
        assert_eq!(
            visited(&index, "https://example.com/books/12"),
            [
                "",
                "https://example.com/",
                "https://example.com/books/",
                "https://example.com/books/1"
            ]
        );
        assert_eq!(
            visited(&index, "https://example.com/users"),
            ["", "https://example.com/"]
        );
        assert_eq!(visited(&index, "ftp://x"), [""]);
        assert_eq!(visited(&index, ""), [""]);
    }

    #[test]
    fn removing_values_prunes_and_merges_nodes() {
        let mut index = PrefixIndex::default();
        file(&mut index, "abc");
        file(&mut index, "abd");
        file(&mut index, "ab");
        assert_eq!(index.node_count(), 4);
        unfile(&mut index, "abd");
        unfile(&mut index, "ab");
        // "ab" and "c" merged back into one node under the root.
        assert_eq!(index.node_count(), 2);
        assert_eq!(visited(&index, "abcd"), ["abc"]);
        assert!(visited(&index, "abd").is_empty());
        unfile(&mut index, "abc");
        assert_eq!(index.node_count(), 1);
        assert!(visited(&index, "abc").is_empty());
        // Freed slots are reused.
        file(&mut index, "x");
        assert_eq!(index.nodes.len(), 4);
    }

    proptest! {
        #[test]
        fn agrees_with_a_linear_scan(
            prefixes in prop::collection::vec("[ab]{0,6}", 0..24),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            keys in prop::collection::vec("[ab]{0,8}", 1..12),
        ) {
            let mut index = PrefixIndex::default();
            let mut live: Vec<String> = Vec::new();
            for prefix in &prefixes {
                file(&mut index, prefix);
                live.push(prefix.clone());
            }
            for pick in removed {
                if live.is_empty() {
                    break;
                }
                let prefix = live.remove(pick.index(live.len()));
                unfile(&mut index, &prefix);
            }
            for key in keys {
                let mut expected: Vec<String> =
                    live.iter().filter(|p| key.starts_with(p.as_str())).cloned().collect();
                expected.sort();
                let mut got = visited(&index, &key);
                got.sort();
                prop_assert_eq!(got, expected);
            }
            let mut all = Vec::new();
            index.for_each(|value| all.push(value.clone()));
            all.sort();
            live.sort();
            prop_assert_eq!(all, live.clone());
            let mut distinct = live.clone();
            distinct.dedup();
            prop_assert!(index.node_count() <= 2 * distinct.len() + 1);
        }
    }
}
